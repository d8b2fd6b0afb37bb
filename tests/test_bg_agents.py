"""The RL family in the closed loop: every algorithm runs and records, clear construction
errors, the perception slot, pure updates, divergence stops, shipped environments, and the
`conditioning` and `rl` simulations end to end."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from analysis.recording import Recorder, Recording
from basal_ganglia.agents import ALGORITHMS, make_agent, make_config
from basal_ganglia.loop import collect, make_vector_env
from sims.envs import ENVIRONMENTS


SMALL = {"hidden": (16, 16)}
OFF = dict(SMALL, learning_starts=50, batch_size=16, buffer_size=500)
SMOKE = {
    "dqn": ("CartPole-v1", dict(OFF, train_freq=16, gradient_steps=4)),
    "ddpg": ("Pendulum-v1", OFF),
    "svg0": ("Pendulum-v1", OFF),
    "sac": ("Pendulum-v1", dict(OFF, drift_coef=0.1)),
    "reinforce": ("CartPole-v1", dict(SMALL, n_envs=2, n_steps=64)),
    "ppo": ("Pendulum-v1", dict(SMALL, n_envs=2, n_steps=32, batch_size=32, n_epochs=2)),
    "td_lambda": ("CartPole-v1", dict(SMALL, n_steps=64)),
}


def params(agent) -> list[torch.Tensor]:
    """Every learned tensor of the agent's algorithm."""
    return [p.detach().clone() for m in vars(agent.algo).values() if isinstance(m, torch.nn.Module)
            for p in m.parameters()]


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_every_algorithm_runs_and_records_finite_numbers(algo, device, tmp_path):
    env, overrides = SMOKE[algo]
    agent = make_agent(algo, env, seed=0, device=device, **overrides)
    with Recorder(tmp_path / "run.h5", sim="rl", seed=0, config={}) as rec:
        agent.learn(300, recorder=rec, eval_every=150, eval_episodes=1)
    assert agent.num_steps >= 300
    with Recording(tmp_path / "run.h5") as r:
        losses = [k for k in r.datasets() if k.startswith("rl/loss/")]
        assert losses
        for k in losses + ["rl/eval_return", "basal_ganglia/dopamine"]:
            assert np.isfinite(r[k]).all(), k
        n_envs = overrides.get("n_envs", 1)
        steps = r.shape("env/obs")[0]
        assert steps * n_envs == agent.num_steps
        # per environment step, one column per environment: the same layout for every algorithm
        for name in ("env/reward", "env/terminated", "basal_ganglia/dopamine"):
            assert r.shape(name) == (steps, n_envs), name
        assert len(r["rl/update_env_step"]) == len(r[losses[0]])
    obs, _ = gym.make(env).reset(seed=0)
    action = agent.act(obs, deterministic=True)
    assert agent.action_space.contains(action)


@pytest.mark.parametrize("algo", ["dqn", "sac", "ppo"])
def test_learn_twice_is_deterministic_and_keeps_no_loop_state(algo):
    """Two learn calls carry over only networks, replay and the step count: the same seed gives
    the same networks, and a learn call does not leave behind anything the next one reads."""
    env, overrides = SMOKE[algo]
    agents = []
    for _ in range(2):  # one after the other: sampling draws from torch's global generator
        agent = make_agent(algo, env, seed=3, **overrides)
        before = set(vars(agent.algo))
        agent.learn(150)
        agent.learn(150)
        agents.append(agent)
    a, b = agents
    assert set(vars(a.algo)) == before
    assert a.num_steps == b.num_steps >= 300
    for p, q in zip(params(a), params(b)):
        assert torch.equal(p, q)


def test_recording_does_not_change_the_run(tmp_path):
    """Recording evaluates SAC's target, which samples; it must not draw from training's
    generator, or a recorded run would learn differently from the benchmarked one."""
    env, overrides = SMOKE["sac"]
    bare = make_agent("sac", env, seed=2, **overrides).learn(120)
    with Recorder(tmp_path / "r.h5", sim="rl", seed=2, config={}) as rec:
        recorded = make_agent("sac", env, seed=2, **overrides).learn(120, recorder=rec)
    for p, q in zip(params(bare), params(recorded)):
        assert torch.equal(p, q)


def test_dqn_exploration_is_a_function_of_progress():
    algo = make_agent("dqn", "CartPole-v1", hidden=(8,)).algo
    cfg = algo.cfg
    assert algo.epsilon(0.0) == cfg.exploration_initial_eps
    assert algo.epsilon(cfg.exploration_fraction) == pytest.approx(cfg.exploration_final_eps)
    assert algo.epsilon(1.0) == pytest.approx(cfg.exploration_final_eps)


@pytest.mark.parametrize("anneal", [False, True])
def test_off_policy_anneal_scales_every_learning_rate_with_progress(anneal):
    """anneal: before each training phase every optimiser's rate is its initial rate times
    1 − progress (SAC: actor, critics and temperature); without it the rates stay put."""
    agent = make_agent("sac", "Pendulum-v1", seed=0, anneal=anneal, **OFF)
    agent.learn(100)  # the last phase runs at step 100, after 99 of the 100 steps
    rates = [g["lr"] for opt in (agent.algo.actor_opt, agent.algo.q_opt, agent.algo.alpha_opt)
             for g in opt.param_groups]
    expected = agent.cfg.learning_rate * ((1 - 99 / 100) if anneal else 1.0)
    assert rates == pytest.approx([expected] * len(rates))


class TwoColumnPerception:
    """The raw observation as column x, and a distractor column that the agent must not read."""

    def __init__(self, d: int):
        self.dims = {"x": d, "noise": 5}
        self.nodes = tuple(self.dims)
        self.sequence_length, self.layout, self.has_memory = 0, None, False
        self.resets = 0

    def reset(self, done=None):
        self.resets += 1

    def perceive(self, x, a_prev=None):
        x = torch.as_tensor(np.asarray(x, np.float32))
        return {"noise": torch.full((len(x), 5), 1e3), "x": x}

    def replayed(self, batch):
        return ({"noise": torch.full((len(batch.obs), 5), 1e3), "x": batch.obs},
                {"noise": torch.full((len(batch.obs), 5), 1e3), "x": batch.next_obs})

    def learn(self, sequences):
        return {}


class WorldModelProbe(TwoColumnPerception):
    """A perception whose world model only checks what replay hands it."""

    def __init__(self, d: int):
        super().__init__(d)
        self.sequence_length = 6
        self.layout = {"angle": [0, 1], "velocity": [2]}
        # the world model's schedule: an update every 25 env steps from learning_starts on
        self.learn_every, self.batch_size, self.warmup_updates, self.learn_for = 25, 16, 0, 10**9
        self.seen = []

    def learn(self, sequences):
        self.seen.append(sequences)
        return {"energy": float(sequences.obs["angle"].pow(2).mean())}


def test_the_loop_trains_the_world_model_on_replayed_sequences_in_the_cortex_layout(tmp_path):
    probe = WorldModelProbe(3)
    agent = make_agent("sac", "Pendulum-v1", seed=0, perception=probe, state_nodes=("x",),
                       **dict(OFF, train_freq=25))
    with Recorder(tmp_path / "w.h5", sim="rl", seed=0, config={}) as rec:
        agent.learn(150, recorder=rec)
    assert len(probe.seen) == (150 - 50) // 25 + 1  # at learning_starts = 50, then every 25
    for seq in probe.seen:
        assert seq.obs["angle"].shape == (6, 16, 2) and seq.obs["velocity"].shape == (6, 16, 1)
        assert seq.actions.shape == (6, 16, 1)
        # consecutive steps of one episode: each next observation is the following observation
        assert torch.equal(seq.next_obs["angle"][:-1], seq.obs["angle"][1:])
    with Recording(tmp_path / "w.h5") as r:
        assert r.shape("cortex/world_model/loss/energy") == r.shape("cortex/world_model/env_step") == (5,)
        assert list(r["cortex/world_model/env_step"]) == [50, 75, 100, 125, 150]
    # a learn call that stops mid-episode closes it: the next call's windows never bridge the gap
    agent.learn(37)
    agent.learn(113)
    for seq in probe.seen[5:]:
        assert torch.equal(seq.next_obs["angle"][:-1], seq.obs["angle"][1:])


@pytest.mark.parametrize("algo", ["sac", "ppo"])
def test_policy_and_critics_read_only_the_configured_columns(algo):
    env, overrides = SMOKE[algo]
    raw = make_agent(algo, env, seed=1, **overrides).learn(200)
    slot = make_agent(algo, env, seed=1, perception=TwoColumnPerception(raw.perception.dims["x"]),
                      state_nodes=("x",), **overrides).learn(200)
    assert slot.perception.resets > 0  # episodes ended and the perception was told
    for p, q in zip(params(raw), params(slot)):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match=r"column\(s\) \['z'\].*has \['x'\]"):
        make_agent(algo, env, state_nodes=("z",), **overrides)


def test_ppo_advantage_switch_and_recording(tmp_path):
    path = tmp_path / "ppo.h5"
    for advantage in ("gae", "truncated", "bias_corrected"):
        with Recorder(path, sim="rl", seed=0, config={}, overwrite=True) as rec:
            agent = make_agent("ppo", "CartPole-v1", advantage=advantage, n_envs=2, n_steps=16,
                               batch_size=32, n_epochs=1, hidden=(8,))
            agent.learn(64, recorder=rec)
        with Recording(path) as r:
            assert r["basal_ganglia/dopamine"].shape == (32, 2)
            assert r["basal_ganglia/value"].shape == (32, 2)
            assert r["env/obs"].shape == (32, 2, 4)
            for term in ("value", "drift", "policy_entropy", "dynamics", "observation",
                         "state_entropy"):
                assert f"basal_ganglia/action_free_energy/{term}" in r


def test_off_policy_dopamine_is_the_td_error_of_the_recorded_transition(tmp_path):
    agent = make_agent("ddpg", "Pendulum-v1", seed=0, **OFF)
    with Recorder(tmp_path / "d.h5", sim="rl", seed=0, config={}) as rec:
        agent.learn(120, recorder=rec)
    with Recording(tmp_path / "d.h5") as r:
        assert r.shape("basal_ganglia/dopamine") == (120, 1) == r.shape("basal_ganglia/q")
        obs, action, reward = r["env/obs"][:, 0], r["env/action"][:, 0], r["env/reward"][:, 0]
        delta, q = r["basal_ganglia/dopamine"][:, 0], r["basal_ganglia/q"][:, 0]
        assert "basal_ganglia/action_free_energy/total" not in r  # DDPG trains no policy posterior
    # before learning starts the networks are the initial ones: recompute δ from the recording
    fresh = make_agent("ddpg", "Pendulum-v1", seed=0, **OFF).algo
    n = 40
    with torch.no_grad():
        z, a = torch.as_tensor(obs[:n]), torch.as_tensor(action[:n])
        next_z = torch.as_tensor(obs[1:n + 1])
        next_q = fresh.q_target(next_z, fresh.actor_target(next_z))
        expected = torch.as_tensor(reward[:n]) + fresh.cfg.gamma * next_q - fresh.q(z, a)
    with torch.no_grad():
        assert np.allclose(q[:n], fresh.q(z, a).numpy(), atol=1e-5)
    assert np.allclose(delta[:n], expected.numpy(), atol=1e-5)


def test_divergence_stops_naming_the_quantity_step_and_key():
    agent = make_agent("ppo", "CartPole-v1", learning_rate=1e4, n_envs=2, n_steps=32)
    with pytest.raises(FloatingPointError, match=r"loss .* at env step \d+.*'ppo.learning_rate'"):
        agent.learn(3000)


def test_bad_configuration_fails_clearly():
    with pytest.raises(ValueError, match="unknown algorithm 'sacc'; valid: dqn"):
        make_agent("sacc", "Pendulum-v1")
    for algo in ("sac", "ddpg", "svg0"):
        with pytest.raises(ValueError, match=f"{algo} needs a continuous"):
            make_agent(algo, "CartPole-v1")
    with pytest.raises(ValueError, match="dqn needs a Discrete"):
        make_agent("dqn", "Pendulum-v1")
    with pytest.raises(ValueError, match="unknown config keys"):
        make_config("ppo", learning_rte=1.0)
    with pytest.raises(ValueError, match="'advantage' must be one of gae"):
        make_agent("ppo", "CartPole-v1", advantage="gea")
    for key, value in (("learning_rate", -1.0), ("gamma", 2.0), ("batch_size", 0),
                       ("learning_rate", float("nan"))):
        with pytest.raises(ValueError, match=f"'{key}'"):
            make_config("sac", **{key: value})
    agent = make_agent("dqn", "CartPole-v1", hidden=(8,))
    with pytest.raises(ValueError, match=r"shape \(B, 4\)"):
        agent.act(np.zeros(3))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        agent.learn(0)


@pytest.mark.parametrize("name", list(ENVIRONMENTS))
def test_shipped_environments_pass_check_env(name):
    check_env(gym.make(f"brainloop/{name}-v0").unwrapped, skip_render_check=True)


def test_conditioning_env_rejects_impossible_timing():
    with pytest.raises(ValueError, match="cs_time"):
        ENVIRONMENTS["PavlovianConditioning"](trial_length=10, cs_time=5, delay=5)


def test_conditioning_simulation_end_to_end(tmp_path):
    from analysis.recording import Recording
    from sims.runner import run_simulation

    out = tmp_path / "c.h5"
    run_simulation("conditioning", out=out, overrides=["trials=120", "trial_length=12",
                                                       "cs_time=2", "delay=4", "gamma=0.9",
                                                       "lr=0.3"], quiet=True)
    rec = Recording(out)
    s = rec.summary
    # one row per environment step: a trial of 12 time steps is 11 steps
    assert rec["basal_ganglia/dopamine"].shape == (120 * 11, 1)
    assert rec["basal_ganglia/value"].shape == (120 * 11, 1)
    assert s["delta_us_first"] == pytest.approx(1.0)
    assert s["delta_cs_expected"] == pytest.approx(0.9 ** 4)
    assert s["delta_cs_last"] == pytest.approx(s["delta_cs_expected"], rel=0.05)
    assert abs(s["delta_us_last"]) < 0.05
    assert s["delta_omission"] == pytest.approx(-1.0, abs=0.05)
    from analysis.figures_rl import conditioning_dopamine

    assert conditioning_dopamine(rec) is not None


def test_rl_simulation_end_to_end(tmp_path):
    from analysis.figures_rl import rl_dopamine, rl_losses, rl_returns
    from sims.rl import RLConfig
    from sims.runner import run_simulation

    out = tmp_path / "rl.h5"
    run_simulation("rl", out=out, overrides=["algo=dqn", "steps=300", "eval_every=150",
                                             "eval_episodes=2", "dqn.hidden=8",
                                             "dqn.learning_starts=50", "dqn.train_freq=50"],
                   quiet=True)
    with Recording(out) as rec:
        assert rec.summary["env_steps"] == 300
        assert np.isfinite(rec.summary["final_mean_return"])
        assert len(rec["rl/eval_return"]) == 2
        assert rec.config["dqn"]["hidden"] == [8]
        assert all(f(rec) is not None for f in (rl_returns, rl_losses, rl_dopamine))
    # the same run from a config object, as a sweep would start it
    cfg = RLConfig(algo="dqn", steps=300, eval_every=150, eval_episodes=2,
                   dqn=make_config("dqn", hidden=(8,), learning_starts=50, train_freq=50))
    run_simulation("rl", config=cfg, out=tmp_path / "obj.h5", quiet=True)
    with Recording(out) as a, Recording(tmp_path / "obj.h5") as b:
        assert a.config == b.config
        for name in a.datasets():
            assert np.array_equal(a[name], b[name]), name


def test_rl_config_is_validated_in_full():
    from sims.rl import RLConfig

    for kwargs, culprit in ((dict(algo="sac", env="CartPole-v1"), "needs a continuous"),
                            (dict(algo="dqn", env="Pendulum-v1"), "needs a Discrete"),
                            (dict(env="os:Env-v0"), "module to import"),
                            (dict(env="CartPol-v1"), "did you mean CartPole-v1"),
                            (dict(steps=-5), "'steps' must be >= 1"),
                            (dict(algo="ppo", sac=make_config("sac", tau=0.1)), "sac.* were set"),
                            (dict(state_nodes=("z",)), "no column 'z'")):
        with pytest.raises(ValueError, match=culprit):
            RLConfig(**kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("algo,steps", [("ppo", 40_000), ("dqn", 30_000)])
def test_cartpole_is_learned(algo, steps):
    agent = make_agent(algo, "CartPole-v1", seed=0)
    agent.learn(steps)
    assert agent.evaluate(5).mean() >= 400


def test_on_policy_rollout_bootstraps_truncation_from_the_final_observation():
    env = lambda: gym.wrappers.TimeLimit(gym.make("CartPole-v1").unwrapped, max_episode_steps=4)
    agent = make_agent("ppo", env, n_envs=2, n_steps=12, hidden=(8,))
    envs = make_vector_env(agent, 2)
    obs, _ = envs.reset(seed=0)
    ro, _, _ = collect(agent, envs, obs, np.zeros(2))
    done = (ro.terminated | ro.truncated).numpy()
    assert ro.truncated.any()
    same_episode = ~done[:-1]
    # inside an episode the next value is the next step's value; at a truncation it is V̂ of
    # the final observation, not of the reset observation that follows
    assert np.allclose(ro.next_values[:-1].numpy()[same_episode], ro.values[1:].numpy()[same_episode])
    cut = ro.truncated[:-1].numpy()
    assert not np.allclose(ro.next_values[:-1].numpy()[cut], ro.values[1:].numpy()[cut])
    delta = ro.rewards + agent.cfg.gamma * ro.next_values * (~ro.terminated) - ro.values
    assert np.allclose(delta.numpy(), ro.delta.numpy(), atol=1e-6)


def test_double_dqn_target_evaluates_the_online_argmax_with_the_target_net():
    from hippocampus.replay import Batch

    dqn = make_agent("dqn", "CartPole-v1", seed=0, double_q=True).algo
    with torch.no_grad():  # make the online and target networks disagree
        for p in dqn.q.parameters():
            p.add_(0.5 * torch.randn_like(p))
    gen = torch.Generator().manual_seed(0)
    n = 16
    batch = Batch(obs=torch.randn(n, 4, generator=gen), action=torch.randint(0, 2, (n,), generator=gen),
                  reward=torch.randn(n, generator=gen), next_obs=torch.randn(n, 4, generator=gen),
                  terminated=(torch.rand(n, generator=gen) < 0.3).float(), truncated=torch.zeros(n),
                  index=np.arange(n), weight=torch.ones(n))
    with torch.no_grad():
        greedy = dqn.q(batch.next_obs).argmax(-1)
        next_q = dqn.q_target(batch.next_obs)[torch.arange(n), greedy]
        expected = batch.reward + 0.99 * (1 - batch.terminated) * next_q
        plain = batch.reward + 0.99 * (1 - batch.terminated) * dqn.q_target(batch.next_obs).max(-1).values
    assert torch.allclose(dqn.target(batch), expected)
    assert not torch.allclose(expected, plain)
