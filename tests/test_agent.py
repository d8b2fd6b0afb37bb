"""The agent (issue 11): the cortex in the perception slot of the closed loop.

A short run records every promised dataset for both posteriors, in a discrete and a
continuous environment; a trivial cortex makes the agent the raw-observation agent; world-model
learning from replay lowers the held-out one-step prediction error; re-inferring the stored
stream gives the states online filtering gave."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from analysis.recording import Recording
from basal_ganglia.agents import make_agent
from cortex.perception import CortexConfig, CortexPerception
from hippocampus.replay import ReplayMemory
from sims.envs import PartialObservation
from sims.runner import run_simulation

TINY_CORTEX = ["cortex.hidden=4", "cortex.sequence_length=6", "cortex.batch_size=4",
               "cortex.warmup_updates=2", "cortex.learn_every=8", "cortex.learn_for=60",
               "cortex.refresh_every=40", "cortex.burn_in=2",
               "cortex.inference_steps=3", "imagine=2", "imagine_horizon=3", "eval_every=80",
               "eval_episodes=1"]
ENVS = {
    "continuous": ["algo=sac", "env=Pendulum-v1", "observe=0,1", "steps=160", "sac.hidden=16,16",
                   "sac.learning_starts=60", "sac.batch_size=16"],
    "discrete": ["algo=dqn", "env=CartPole-v1", "obs_noise=0.01", "steps=160", "dqn.hidden=16",
                 "dqn.learning_starts=60", "dqn.batch_size=16", "dqn.train_freq=2", "dqn.gradient_steps=1"],
}
PER_STEP = ["env/obs", "env/action", "env/reward", "env/terminated", "env/truncated",
            "cortex/x/z", "cortex/x/error", "cortex/x/energy", "cortex/s/z", "cortex/s/error",
            "cortex/s/energy", "cortex/prediction_error", "basal_ganglia/value",
            "basal_ganglia/q", "basal_ganglia/dopamine"]


@pytest.mark.parametrize("posterior", ["laplace", "point"])
@pytest.mark.parametrize("kind", ENVS)
def test_a_short_run_records_every_promised_dataset(tmp_path, posterior, kind) -> None:
    out = tmp_path / "agent.h5"
    figures = run_simulation("agent", out=out, seed=3, quiet=True,
                             overrides=ENVS[kind] + TINY_CORTEX + [f"cortex.posterior={posterior}"])
    with Recording(out) as rec:
        names = set(rec.datasets())
        for name in PER_STEP + (["cortex/entropy"] if posterior == "laplace"
                                else ["cortex/inference_iterations"]):
            assert name in names, name
            assert rec[name].shape[:2] == (160, 1), (name, rec[name].shape)
            assert np.isfinite(rec[name][()]).all(), name
        d_x = 2 if kind == "continuous" else 4
        assert rec["cortex/s/z"].shape == (160, 1, 4) and rec["cortex/x/z"].shape == (160, 1, d_x)
        updates = len(rec["rl/update_env_step"])
        assert updates == (100 if kind == "continuous" else 50)
        for name in ["hippocampus/size", "hippocampus/sample_age",
                     *[n for n in names if n.startswith("rl/loss/")]]:
            assert len(rec[name]) == updates, name
        world = len(rec["cortex/world_model/env_step"])
        assert world > 0 and len(rec["cortex/world_model/loss/prediction_error"]) == world
        assert len(rec["cortex/world_model/loss/free_energy"]) == world
        assert rec["cortex/imagination/imagined"].shape == rec["cortex/imagination/actual"].shape == (2, 3, d_x)
        assert len(rec["rl/eval_return"]) == 2 and len(rec["rl/final_eval_returns"]) == 1
        # the recorded observation is what the agent saw, and x is clamped to it
        assert np.array_equal(rec["cortex/x/z"][()], rec["env/obs"][()])
        for key in ("final_mean_return", "env_steps", "world_model_error", "steps_per_second"):
            assert key in rec.summary and np.isfinite(rec.summary[key]), key
        assert rec.summary["env_steps"] == 160
        shares = [v for k, v in rec.summary.items() if k.startswith("time_share_")]
        assert {"time_share_perception", "time_share_world_model", "time_share_updates"} <= set(rec.summary)
        assert abs(sum(shares) - 1) < 1e-9
    assert figures["world_model_error"] == rec.summary["world_model_error"]


def _trivial(env: gym.Env, posterior: str) -> CortexPerception:
    cfg = CortexConfig(posterior=posterior, hidden=(3,), activation="identity", temporal=False,
                       efference_copy=False, learn=False, refresh_every=25)
    return CortexPerception(env.observation_space, env.action_space, cfg, seed=1)


@pytest.mark.parametrize("posterior", ["laplace", "point"])
@pytest.mark.parametrize("algo, env_id", [("sac", "Pendulum-v1"), ("dqn", "CartPole-v1")])
def test_a_trivial_cortex_gives_the_raw_agent(algo, env_id, posterior) -> None:
    """Identity columns, no temporal or action terms, nothing learned, the policy reading the
    clamped observation: the same actions, step for step, as the raw-observation agent."""
    env = gym.make(env_id)
    overrides = dict(hidden=(16, 16), learning_starts=50, batch_size=16)
    actions = {}

    def log(agent):
        actions.setdefault(id(agent), []).append(agent.memory.latest().action.numpy().copy())

    # one after the other: the algorithms sample from torch's global generator
    raw = make_agent(algo, env_id, seed=4, **overrides).learn(200, callback=log)
    cortex = make_agent(algo, env_id, seed=4, perception=_trivial(env, posterior),
                        state_nodes=("x",), **overrides).learn(200, callback=log)
    assert cortex.perceived is not None and raw.perceived is None
    np.testing.assert_array_equal(np.concatenate(actions[id(raw)]), np.concatenate(actions[id(cortex)]))
    for a, b in zip(raw.algo.q.parameters(), cortex.algo.q.parameters()):
        assert torch.equal(a, b)


def _episodes(env: gym.Env, memory: ReplayMemory, episodes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        done = False
        while not done:
            a = rng.uniform(-2, 2, size=(1,)).astype(np.float32)
            nxt, r, term, trunc, _ = env.step(a)
            memory.add(obs, a, r, nxt, term, trunc)
            done, obs = term or trunc, nxt


@pytest.mark.parametrize("posterior, factor", [("laplace", 0.5), ("point", 0.9)])
def test_world_model_learning_from_replay_lowers_the_held_out_prediction_error(posterior, factor) -> None:
    """Masked pendulum (cos θ, sin θ), random torques: updates on replayed windows lower the
    one-step prediction error of x on a fixed set of held-out stored windows."""
    env = PartialObservation(gym.make("Pendulum-v1"), (0, 1))
    train, held = ReplayMemory(4000, (2,), (1,)), ReplayMemory(2000, (2,), (1,))
    _episodes(env, train, 12, seed=0)
    _episodes(env, held, 4, seed=100)
    cfg = CortexConfig(posterior=posterior, hidden=(8,), state_precision=100.0 if posterior == "laplace" else 1.0,
                       obs_precision=1000.0 if posterior == "laplace" else 10.0, inference_lr=0.05,
                       inference_steps=10)
    perception = CortexPerception(env.observation_space, env.action_space, cfg, seed=0)
    rng = np.random.default_rng(0)
    fixed = held.sequences(32, 16, np.random.default_rng(1))
    before = perception.prediction_error(fixed)
    for _ in range(150):
        perception.learn(train.sequences(16, 16, rng))
    after = perception.prediction_error(fixed)
    assert after < factor * before, (before, after)


@pytest.mark.parametrize("posterior", ["laplace", "point"])
def test_reperceiving_the_stored_stream_gives_the_online_states(posterior) -> None:
    """With the world model unchanged, re-inference of every stored transition (in one piece,
    or cut into pieces that each start at an episode's start) equals online filtering."""
    agent = make_agent("dqn", "CartPole-v1", seed=2, learning_starts=10_000, hidden=(8,),
                       perception=CortexPerception(
                           gym.make("CartPole-v1").observation_space, gym.spaces.Discrete(2),
                           CortexConfig(posterior=posterior, hidden=(5,), learn=False,
                                        inference_steps=4, inference_lr=0.002), seed=3))
    agent.learn(300)
    online = (agent.perceived.state.copy(), agent.perceived.next_state.copy())
    for chunks in (1, 512):  # one piece; one piece per stored step, each with its burn-in
        agent.perceived.state[:], agent.perceived.next_state[:] = 0, 0
        agent.reperceive(chunks)
        np.testing.assert_allclose(agent.perceived.state[:300], online[0][:300], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(agent.perceived.next_state[:300], online[1][:300], rtol=1e-4,
                                   atol=1e-5)


def test_the_cortex_needs_an_off_policy_algorithm() -> None:
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="off-policy"):
        make_agent("ppo", "CartPole-v1", perception=CortexPerception(env.observation_space, env.action_space))


@pytest.mark.parametrize("replay", ["td_error", "prediction_error"])
def test_prioritised_replay(replay) -> None:
    """|δ| or the world model's surprise sets the priorities; sampling follows them."""
    env = gym.make("CartPole-v1")
    cortex = CortexPerception(env.observation_space, env.action_space,
                              CortexConfig(hidden=(4,), sequence_length=4, batch_size=4,
                                           warmup_updates=2), seed=0)
    agent = make_agent("dqn", "CartPole-v1", seed=0, perception=cortex, replay=replay,
                       hidden=(8,), learning_starts=40, batch_size=16, train_freq=1,
                       gradient_steps=1).learn(120)
    stored = agent.memory.priority[0, :len(agent.memory)]
    assert np.all(stored > 0) and np.std(stored) > 0
    newest = agent.memory.newest()
    if replay == "prediction_error" and not agent.memory.arrays([newest])["terminated"][0]:
        # the newest step's priority is how surprising its next observation was
        surprise = float(agent.perception.activity()["cortex/prediction_error"][0])
        assert stored[newest] == pytest.approx(surprise + agent.memory.eps, rel=1e-5)
    batch = agent.replay_batch(256)
    assert float(batch.weight.min()) < 1.0 <= float(batch.weight.max()) + 1e-6
    with pytest.raises(ValueError, match="world model"):
        make_agent("dqn", "CartPole-v1", replay="prediction_error")


def test_the_amortised_recogniser_saves_inference_iterations() -> None:
    """Hybrid PC: once the recogniser has learned the converged states of replayed windows, a
    step's inference, started from its proposal, stops (tol) at least a quarter earlier than
    from the prior prediction (measured: 10 against 17 iterations)."""
    env = PartialObservation(gym.make("Pendulum-v1"), (0, 1))
    memory = ReplayMemory(3000, (2,), (1,))
    _episodes(env, memory, 8, seed=0)
    common = dict(posterior="point", hidden=(8,), temporal=False, efference_copy=False,
                  state_precision=1.0, obs_precision=1.0, inference_steps=200, inference_lr=0.1,
                  inference_tol=1e-3, lr=1e-2)
    hybrid = CortexPerception(env.observation_space, env.action_space,
                              CortexConfig(inference_init="amortised", **common), seed=0)
    rng = np.random.default_rng(0)
    for _ in range(150):
        losses = hybrid.learn(memory.sequences(16, 8, rng))
    assert "recognition" in losses
    x = memory.arrays(np.arange(256))["obs"]
    hybrid.reset()
    hybrid.perceive(x)
    amortised = hybrid.activity()["cortex/inference_iterations"].float().mean()
    cold = CortexPerception(env.observation_space, env.action_space,
                            CortexConfig(inference_init="prior", **common), seed=0)
    cold.model.load_state_dict(hybrid.model.state_dict())
    cold.perceive(x)
    from_prior = cold.activity()["cortex/inference_iterations"].float().mean()
    assert amortised <= 0.75 * from_prior, (amortised, from_prior)


def test_keep_best_restores_the_networks_of_the_best_evaluation(tmp_path) -> None:
    """keep_best: the final score is that of the networks kept at the best periodic evaluation,
    on fresh episodes; the last networks' score is recorded beside it."""
    out = tmp_path / "best.h5"
    figures = run_simulation("agent", out=out, seed=2, quiet=True,
                             overrides=ENVS["discrete"] + TINY_CORTEX + ["keep_best=true", "eval_every=40"])
    with Recording(out) as rec:
        evals, steps = rec["rl/eval_return"][()], rec["rl/eval_env_step"][()]
        assert len(evals) == 4 and len(rec["rl/best_eval_returns"]) == 1
        best = len(evals) - 1 - int(np.argmax(evals[::-1]))  # the last of equal best scores
        assert figures["best_env_step"] == steps[best]
        assert figures["last_mean_return"] == pytest.approx(rec["rl/final_eval_returns"][()].mean())
        assert figures["final_mean_return"] == pytest.approx(rec["rl/best_eval_returns"][()].mean())


def test_snapshot_and_restore_round_trip() -> None:
    agent = make_agent("dqn", "CartPole-v1", seed=0, hidden=(8,), learning_starts=10, batch_size=8,
                       train_freq=2, gradient_steps=1)
    saved = agent.snapshot()
    agent.learn(60)
    modules = agent._modules()
    assert modules, "the DQN agent has torch modules to keep"
    changed = any(not torch.equal(a, b) for k, m in modules.items()
                  for a, b in zip(m.state_dict().values(), saved[k].values()))
    assert changed
    agent.restore(saved)
    for k, m in agent._modules().items():
        for a, b in zip(m.state_dict().values(), saved[k].values()):
            assert torch.equal(a, b), k
