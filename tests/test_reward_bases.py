"""Reward bases: linearity of TD in the reward, revaluation without learning, clear errors,
and the two revaluation simulations."""

import numpy as np
import pytest
import torch

from analysis.recording import Recording
from basal_ganglia.reward_bases import BasisQ, MotivationalTimeline, RewardBases, SuccessorQ
from basal_ganglia.striatum import BasalGanglia, VentralStriatum
from basal_ganglia.td import OnlineTD
from sims.envs import CueOutcome, GridRoom
from sims.runner import run_simulation


def random_episodes(rng, n_states: int, n_bases: int, episodes: int, length: int = 6):
    """Random trajectories (s, r (K,), s', terminated) on a small chain of states."""
    for _ in range(episodes):
        s = int(rng.integers(n_states))
        for t in range(length):
            s2 = int(rng.integers(n_states))
            yield s, rng.normal(size=n_bases), s2, t == length - 1
            s = s2


@pytest.mark.parametrize("features", ["tabular", "linear"])
def test_reward_bases_equal_a_td_learner_on_the_weighed_reward_after_every_update(features):
    rng = np.random.default_rng(0)
    n_states, k = 6, 3
    phi = np.eye(n_states) if features == "tabular" else rng.normal(size=(n_states, 4))
    alpha = rng.normal(size=k)
    bases = BasisQ(phi.shape[1], 1, k, lr=0.1, gamma=0.9)
    scalar = BasisQ(phi.shape[1], 1, 1, lr=0.1, gamma=0.9)
    for s, r, s2, term in random_episodes(rng, n_states, k, 40):
        d = bases.update(phi[s], 0, r, phi[s2], term)
        d_scalar = scalar.update(phi[s], 0, [alpha @ r], phi[s2], term)
        assert alpha @ d == pytest.approx(d_scalar[0], abs=1e-10)
        np.testing.assert_allclose(phi @ bases.W[:, 0] @ alpha, phi @ scalar.W[:, 0, 0],
                                   atol=1e-10)
    assert np.abs(scalar.W).max() > 0.1  # it did learn


def test_deep_critic_heads_with_traces_equal_a_scalar_critic_on_the_weighed_reward():
    """The torch critic (VentralStriatum, linear, K heads) with TD(λ) traces: Σ α_i V̂_i
    equals a one-head critic trained on Σ α_i r_i, started from Σ α_i of the heads' weights."""
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    k, d = 3, 5
    alpha = torch.tensor(rng.normal(size=k), dtype=torch.float64)
    heads = VentralStriatum(d, hidden=(), n_bases=k).double()
    heads.set_motivation(alpha)
    one = VentralStriatum(d, hidden=(), n_bases=1).double()
    with torch.no_grad():
        one.net[-1].weight.copy_(alpha @ heads.net[-1].weight)
        one.net[-1].bias.copy_(alpha @ heads.net[-1].bias)
    features = torch.tensor(rng.normal(size=(8, d)))
    learners = [OnlineTD(heads, lr=0.05, gamma=0.9, lam=0.7),
                OnlineTD(one, lr=0.05, gamma=0.9, lam=0.7)]
    critics = [BasalGanglia(heads, gamma=0.9), BasalGanglia(one, gamma=0.9)]
    for s, r, s2, term in random_episodes(rng, 8, k, 30):
        rewards = [torch.tensor(r), (alpha @ torch.tensor(r))[None]]
        for critic, learner, reward in zip(critics, learners, rewards):
            critic.reset()
            critic.step(features[s])
            state = critic.step(features[s2], reward, term)
            learner.update(features[s], state.dopamine_bases, term)
        torch.testing.assert_close(heads(features), one(features), atol=1e-9, rtol=0)


def test_changing_alpha_revalues_and_changes_choices_without_any_update():
    env = GridRoom(5, {"food": (0, 0), "water": (4, 4)}, max_steps=50)
    q = BasisQ(25, 4, 2, lr=0.5, gamma=0.9)
    rng = np.random.default_rng(0)
    for _ in range(300):  # random exploration teaches both bases
        s, _ = env.reset()
        done = False
        while not done:
            a = int(rng.integers(4))
            s2, _, term, trunc, info = env.step(a)
            q.update(np.eye(25)[s], a, info["reward_bases"], np.eye(25)[s2], term)
            s, done = s2, term or trunc
    weights = q.W.copy()
    start = np.eye(25)[env.reset()[0]]
    hungry, thirsty = env.reward_bases.parse("food=1"), env.reward_bases.parse("water=1")
    go_hungry, go_thirsty = q.q(start) @ hungry, q.q(start) @ thirsty
    # from the centre, food (top left) lies up/left, water (bottom right) down/right
    assert np.argmax(go_hungry) in (0, 2) and np.argmax(go_thirsty) in (1, 3)
    np.testing.assert_array_equal(q.W, weights)

    ventral = VentralStriatum(3, hidden=(8,), n_bases=2)
    params = [p.detach().clone() for p in ventral.parameters()]
    z = torch.randn(4, 3)
    before = ventral(z).detach()
    ventral.set_motivation([2.0, -1.0])
    assert not torch.allclose(ventral(z), before)
    assert all(torch.equal(p, p0) for p, p0 in zip(ventral.parameters(), params))


def test_bad_basis_vectors_and_unknown_alpha_names_fail_clearly():
    bases = RewardBases(("juice", "salt"))
    with pytest.raises(ValueError, match="one entry per reward basis .2: juice, salt"):
        bases.check([1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="'sodium' is not a reward basis; the bases are juice, salt"):
        bases.parse("juice=1,sodium=10")
    with pytest.raises(ValueError, match="LENGTH:name=weight"):
        MotivationalTimeline(bases, ["juice=1"])
    with pytest.raises(ValueError, match="expected .2,."):
        BasisQ(3, 1, 2, lr=0.1, gamma=0.9).update(np.eye(3)[0], 0, [1.0], np.eye(3)[1], True)
    ventral = VentralStriatum(2, hidden=(), n_bases=2)
    bg = BasalGanglia(ventral)
    bg.step(torch.zeros(2))
    with pytest.raises(ValueError, match="2 reward bases"):
        bg.step(torch.zeros(2), torch.zeros(3), False)
    with pytest.raises(ValueError, match="outcome of cue 'salt'"):
        CueOutcome(bases, {"juice": [1.0, 0.0], "salt": [1.0]})
    with pytest.raises(ValueError, match="given more than once"):
        RewardBases(("a", "a"))


def test_timeline_gives_alpha_per_trial():
    bases = RewardBases(("juice", "salt"))
    timeline = MotivationalTimeline(bases, ["3:juice=1,salt=-10", "2:salt=10"])
    assert timeline.total == 5 and list(timeline.starts) == [0, 3]
    np.testing.assert_array_equal(timeline.alpha_at(2), [1, -10])
    np.testing.assert_array_equal(timeline.alpha_at(3), [0, 10])
    assert timeline.alphas().shape == (5, 2)
    with pytest.raises(IndexError):
        timeline.alpha_at(5)


def test_successor_representation_learns_discounted_occupancy():
    sr = SuccessorQ(3, 1, lr=0.5, lr_w=0.5, gamma=0.5)
    for _ in range(60):  # 0 → 1 → 2 (terminal), reward 1 on entering 2
        sr.update(0, 0, 0.0, 1, False)
        sr.update(1, 0, 1.0, 2, True)
    np.testing.assert_allclose(sr.M[0, 0], [0, 1, 0.5], atol=1e-6)
    assert sr.q(0)[0] == pytest.approx(0.5, abs=1e-6)


def test_salt_simulation_records_and_revalues(tmp_path):
    out = tmp_path / "salt.h5"
    figures = run_simulation("revaluation-salt", out=out, seed=1, quiet=True,
                             overrides=["timeline=40:juice=1 salt=-10,5:juice=1 salt=10"])
    with Recording(out) as rec:
        names = set(rec.datasets())
        for condition in ("outcome", "extinction"):
            assert f"revaluation/{condition}/cue" in names
            for learner in ("rb", "td", "sr"):
                for cue in ("juice", "salt"):
                    assert rec[f"revaluation/{condition}/{learner}/p_approach/{cue}"].shape == (45,)
                    assert f"revaluation/{condition}/{learner}/value/{cue}" in names
            for basis in ("juice", "salt"):
                assert rec[f"revaluation/{condition}/bases/{basis}/dopamine_cue"].shape == (45,)
            assert f"revaluation/{condition}/td/dopamine_cue" in names
        assert list(rec["revaluation/switch"]) == [40]
    # zero-shot: reward bases flip at the switch, TD and SR (whose reward is attached to
    # outcomes not yet re-experienced) do not
    assert figures["rb_p_salt_before_switch"] < 0.01
    assert figures["rb_p_salt_after_switch"] > 0.9
    assert figures["td_p_salt_after_switch"] < 0.01 and figures["sr_p_salt_after_switch"] < 0.01
    assert figures["extinction_td_minus_rb_max"] < 0


def test_salt_config_errors_name_the_culprit(tmp_path):
    out = tmp_path / "bad.h5"
    for overrides, match in [(["timeline=10:juice=1 sodium=2,5:juice=1"], "sodium"),
                             (["cues=juice:juice=1,salt:salt=1 salt=2"], "salt"),
                             (["probe=water"], "probe"),
                             (["timeline=10:juice=1"], "two phases")]:
        with pytest.raises(ValueError, match=match):
            run_simulation("revaluation-salt", out=out, quiet=True, overrides=overrides)
        assert not out.exists()


def test_room_simulation_records_and_is_reproducible(tmp_path):
    overrides = ["size=5", "goals=A@0:0,B@4:4", "timeline=25:A=1,10:B=1,10:A=1", "max_steps=40"]
    runs = []
    for name in ("a", "b"):
        figures = run_simulation("revaluation-room", out=tmp_path / f"{name}.h5", seed=2,
                                 quiet=True, overrides=overrides)
        with Recording(tmp_path / f"{name}.h5") as rec:
            runs.append({k: rec[k] for k in rec.datasets()})
        for learner in ("rb", "td", "sr"):
            assert runs[-1][f"revaluation/room/{learner}/steps"].shape == (45,)
            assert f"{learner}_median_steps_after_switch" in figures
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    assert figures["rb_memory"] == 25 * 4 * 2 and figures["sr_memory"] == 25 * 4 * 25 + 25


def test_dqn_agent_learns_a_value_per_basis_and_revalues_without_updates(tmp_path):
    """The closed-loop agent with reward bases: vector rewards in replay, dopamine per basis
    summing to the recorded total under each step's α, and a switch of α that changes the
    values without touching a parameter."""
    from sims.agent import AgentConfig, build_agent
    from sims.config import build_config

    out = tmp_path / "room.h5"
    overrides = ["algo=dqn", "env=brainloop/GridRoom-v0", "perception=raw", "state_nodes=x",
                 "motivation=300:food=1,300:water=2", "steps=600", "eval_every=0",
                 "eval_episodes=1", "dqn.learning_starts=100", "dqn.train_freq=4",
                 "dqn.gradient_steps=1", "dqn.target_update_interval=100"]
    run_simulation("agent", out=out, seed=0, quiet=True, overrides=overrides)
    with Recording(out) as rec:
        assert rec["env/reward"].shape == (600, 1, 2)
        total = rec["basal_ganglia/dopamine"][:, 0]
        per_basis = np.stack([rec[f"basal_ganglia/bases/{b}/dopamine"][:, 0]
                              for b in ("food", "water")], -1)
        recorded_alpha = rec["basal_ganglia/alpha"][:, 0]
    alpha = np.repeat([[1.0, 0.0], [0.0, 2.0]], 300, axis=0)
    np.testing.assert_array_equal(recorded_alpha, alpha)
    np.testing.assert_allclose((alpha * per_basis).sum(-1), total, atol=1e-5)
    assert np.abs(per_basis).max() > 0

    agent = build_agent(build_config(AgentConfig, None, overrides), seed=0)
    agent.learn(300)
    z = torch.eye(25)
    params = [p.detach().clone() for p in agent.algo.q.parameters()]
    food = agent.algo.q(z).detach()
    agent.algo.set_motivation([0.0, 1.0])
    water = agent.algo.q(z).detach()
    torch.testing.assert_close(water, agent.algo.q.bases(z)[..., 1].detach())
    torch.testing.assert_close(food, agent.algo.q.bases(z)[..., 0].detach())
    assert not torch.allclose(food, water)
    assert all(torch.equal(p, p0) for p, p0 in zip(agent.algo.q.parameters(), params))


@pytest.mark.parametrize("overrides, match", [
    (["env=CartPole-v1", "motivation=10:food=1"], "emits no reward bases"),
    (["env=brainloop/GridRoom-v0", "motivation=10:salt=1"], "'salt' is not a reward basis"),
])
def test_agent_motivation_errors_name_the_culprit(tmp_path, overrides, match):
    out = tmp_path / "bad.h5"
    with pytest.raises(ValueError, match=match):
        run_simulation("agent", out=out, quiet=True,
                       overrides=["algo=dqn", "perception=raw", "state_nodes=x", *overrides])
    assert not out.exists()


def test_reward_bases_need_a_per_basis_critic():
    import gymnasium as gym

    from basal_ganglia.agents import SAC
    from basal_ganglia.loop import check_reward_bases

    env = gym.make("brainloop/GridRoom-v0")
    with pytest.raises(ValueError, match="sac has no per-basis critic"):
        check_reward_bases(SAC, env, env.unwrapped.reward_bases)
    with pytest.raises(ValueError, match="emits .'food', 'water'."):
        from basal_ganglia.agents import DQN
        check_reward_bases(DQN, env, RewardBases(("water", "food")))
