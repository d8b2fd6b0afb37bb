"""The RL family: construction errors, smoke runs of every algorithm, shipped environments,
and the `conditioning` and `rl` simulations end to end."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from basal_ganglia.agents import ALGORITHMS, make_agent, make_config
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


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_every_algorithm_runs_and_logs_finite_numbers(algo, device):
    env, overrides = SMOKE[algo]
    agent = make_agent(algo, env, seed=0, device=device, eval_every=150, eval_episodes=1,
                       **overrides)
    agent.learn(300)
    assert agent.num_steps >= 300
    losses = [k for k in agent.history.series if k.startswith("rl/loss/")]
    assert losses
    for k in losses + ["rl/eval_return"]:
        assert np.isfinite(agent.history[k]).all(), k
    obs, _ = gym.make(env).reset(seed=0)
    action = agent.act(obs, deterministic=True)
    assert agent.action_space.contains(action if not agent.discrete else int(action))


@pytest.mark.parametrize("advantage", ["gae", "truncated", "bias_corrected"])
def test_ppo_advantage_switch_and_recording(advantage, tmp_path):
    from analysis.recording import Recorder, Recording

    path = tmp_path / "ppo.h5"
    with Recorder(path, sim="rl", seed=0, config={}) as rec:
        agent = make_agent("ppo", "CartPole-v1", advantage=advantage, n_envs=2, n_steps=16,
                           batch_size=32, n_epochs=1, hidden=(8,))
        agent.learn(64, recorder=rec)
    r = Recording(path)
    assert r["basal_ganglia/dopamine"].shape == (2, 16, 2)
    for term in ("value", "drift", "policy_entropy", "dynamics", "observation",
                 "state_entropy"):
        assert f"basal_ganglia/action_free_energy/{term}" in r


def test_off_policy_recording_has_dopamine_per_env_step(tmp_path):
    from analysis.recording import Recorder, Recording

    with Recorder(tmp_path / "sac.h5", sim="rl", seed=0, config={}) as rec:
        make_agent("sac", "Pendulum-v1", **OFF).learn(120, recorder=rec)
    r = Recording(tmp_path / "sac.h5")
    assert r["basal_ganglia/dopamine"].shape == (120,) and r["basal_ganglia/q"].shape == (120,)
    assert "basal_ganglia/action_free_energy/total" in r


def test_bad_configuration_fails_clearly():
    with pytest.raises(ValueError, match="unknown algorithm 'sacc'; valid: dqn"):
        make_agent("sacc", "Pendulum-v1")
    for algo in ("sac", "ddpg", "svg0"):
        with pytest.raises(ValueError, match=f"{algo} needs a continuous"):
            make_agent(algo, "CartPole-v1")
    with pytest.raises(ValueError, match="dqn needs a Discrete"):
        make_agent("dqn", "Pendulum-v1")
    with pytest.raises(ValueError, match="state dimension 5 does not match .* dimension 4"):
        make_agent("ppo", "CartPole-v1", state_dim=5)
    with pytest.raises(ValueError, match="unknown config keys"):
        make_config("ppo", learning_rte=1.0)
    with pytest.raises(ValueError, match="unknown advantage estimator"):
        make_agent("ppo", "CartPole-v1", advantage="gea")
    agent = make_agent("dqn", "CartPole-v1", hidden=(8,))
    with pytest.raises(ValueError, match="expects states of dimension 4"):
        agent.act(np.zeros(3))


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
    assert rec["basal_ganglia/dopamine"].shape == (120, 12)
    assert s["delta_us_first"] == pytest.approx(1.0)
    assert s["delta_cs_expected"] == pytest.approx(0.9 ** 4)
    assert s["delta_cs_last"] == pytest.approx(s["delta_cs_expected"], rel=0.05)
    assert abs(s["delta_us_last"]) < 0.05
    assert s["delta_omission"] == pytest.approx(-1.0, abs=0.05)
    from analysis.figures_rl import conditioning_dopamine

    assert conditioning_dopamine(rec) is not None


def test_rl_simulation_end_to_end(tmp_path):
    from analysis.recording import Recording
    from sims.runner import run_simulation

    out = tmp_path / "rl.h5"
    run_simulation("rl", out=out, overrides=["algo=dqn", "steps=300", "eval_every=150",
                                             "eval_episodes=2",
                                             "params=hidden=8;learning_starts=50;train_freq=50"],
                   quiet=True)
    rec = Recording(out)
    assert rec.summary["env_steps"] == 300
    assert np.isfinite(rec.summary["final_mean_return"])
    assert len(rec["rl/eval_return"]) == 2
    from analysis.figures_rl import rl_losses, rl_returns

    assert rl_returns(rec) is not None and rl_losses(rec) is not None


def test_rl_simulation_rejects_wrong_state_dimension(tmp_path):
    from sims.rl import RLConfig, build_agent

    with pytest.raises(ValueError, match="state dimension 3"):
        build_agent(RLConfig(algo="ppo", env="CartPole-v1", state_dim=3))
    with pytest.raises(ValueError, match="needs a continuous"):
        build_agent(RLConfig(algo="sac", env="CartPole-v1"))


@pytest.mark.slow
@pytest.mark.parametrize("algo,steps", [("ppo", 40_000), ("dqn", 30_000)])
def test_cartpole_is_learned(algo, steps):
    agent = make_agent(algo, "CartPole-v1", seed=0)
    agent.learn(steps)
    assert agent.evaluate(5).mean() >= 400


def test_on_policy_rollout_bootstraps_truncation_from_the_final_observation():
    env = lambda: gym.wrappers.TimeLimit(gym.make("CartPole-v1").unwrapped, max_episode_steps=4)
    agent = make_agent("ppo", env, n_envs=2, n_steps=12, hidden=(8,))
    agent._make_envs()
    ro = agent.collect()
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

    agent = make_agent("dqn", "CartPole-v1", seed=0, double_q=True)
    with torch.no_grad():  # make the online and target networks disagree
        for p in agent.q.parameters():
            p.add_(0.5 * torch.randn_like(p))
    gen = torch.Generator().manual_seed(0)
    n = 16
    batch = Batch(obs=torch.randn(n, 4, generator=gen), action=torch.randint(0, 2, (n,), generator=gen),
                  reward=torch.randn(n, generator=gen), next_obs=torch.randn(n, 4, generator=gen),
                  terminated=(torch.rand(n, generator=gen) < 0.3).float(), truncated=torch.zeros(n),
                  index=np.arange(n), weight=torch.ones(n))
    with torch.no_grad():
        greedy = agent.q(batch.next_obs).argmax(-1)
        next_q = agent.q_target(batch.next_obs)[torch.arange(n), greedy]
        expected = batch.reward + 0.99 * (1 - batch.terminated) * next_q
        plain = batch.reward + 0.99 * (1 - batch.terminated) * agent.q_target(batch.next_obs).max(-1).values
    assert torch.allclose(agent.td_target(batch), expected)
    assert not torch.allclose(expected, plain)
