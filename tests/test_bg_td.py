"""TD learning in the basal ganglia: analytic values, per-step dopamine, reward bases."""

import numpy as np
import pytest
import torch

from basal_ganglia.striatum import BasalGanglia, DorsalStriatum, VentralStriatum
from basal_ganglia.td import OnlineTD
from sims.envs import RandomWalk


def linear_critic(n, n_bases=1):
    v = VentralStriatum(n, hidden=(), n_bases=n_bases, bias=False)
    torch.nn.init.zeros_(v.net[-1].weight)
    return v


def test_td0_on_random_walk_reaches_analytic_values():
    env = RandomWalk(5)
    ventral = linear_critic(5)
    bg = BasalGanglia(ventral, gamma=1.0)
    learner = OnlineTD(ventral, lr=0.1, gamma=1.0, lam=0.0)
    rng = np.random.default_rng(0)
    for episode in range(1500):
        learner.lr = 0.1 / (1 + episode / 150)
        obs, _ = env.reset(seed=episode)
        bg.reset()
        z_prev = torch.as_tensor(obs)
        bg.step(z_prev)
        done = False
        while not done:
            obs, r, done, _, _ = env.step(int(rng.integers(2)))
            z = torch.as_tensor(obs)
            s = bg.step(z, r, done)
            learner.update(z_prev, s.dopamine_bases, done)
            z_prev = z
    learned = ventral.net[-1].weight.detach().numpy()[0]
    np.testing.assert_allclose(learned, env.true_values(), atol=0.05)


def test_basal_ganglia_step_reports_value_q_and_dopamine():
    ventral = linear_critic(3)
    with torch.no_grad():
        ventral.net[-1].weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    dorsal = DorsalStriatum(3, 2, hidden=(4,), discrete=True)
    bg = BasalGanglia(ventral, dorsal, gamma=0.5)
    first = bg.step(torch.tensor([1.0, 0, 0]), action=torch.tensor([1]))
    assert first.dopamine.item() == 0.0 and first.value.item() == 1.0
    assert first.q.shape == (1,)
    second = bg.step(torch.tensor([0, 1.0, 0]), reward_prev=0.5, terminated_prev=False)
    assert second.dopamine.item() == pytest.approx(0.5 + 0.5 * 2.0 - 1.0)
    third = bg.step(torch.tensor([0, 0, 1.0]), reward_prev=1.0, terminated_prev=True)
    assert third.dopamine.item() == pytest.approx(1.0 - 2.0)  # no bootstrap after termination
    with pytest.raises(ValueError, match="dimension 3"):
        bg.step(torch.zeros(4))


def test_reward_bases_revalue_without_new_learning():
    """Two bases (food, water) learned by TD; changing α revalues states at once."""
    ventral = linear_critic(2, n_bases=2)
    bg = BasalGanglia(ventral, gamma=0.9)
    learner = OnlineTD(ventral, lr=0.5, gamma=0.9)
    food_state, water_state = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    end = torch.zeros(2)
    for _ in range(50):
        for state, r in ((food_state, [1.0, 0.0]), (water_state, [0.0, 1.0])):
            bg.reset()
            bg.step(state)
            s = bg.step(end, torch.tensor(r), True)
            learner.update(state, s.dopamine_bases, True)
    assert ventral(food_state[None]).item() == pytest.approx(1.0, abs=1e-3)
    ventral.set_motivation([0.0, 2.0])  # sated, thirsty
    assert ventral(food_state[None]).item() == pytest.approx(0.0, abs=1e-3)
    assert ventral(water_state[None]).item() == pytest.approx(2.0, abs=1e-3)
    bg.reset()
    bg.step(water_state)
    s = bg.step(end, torch.tensor([0.0, 1.0]), True)
    assert s.dopamine_bases.shape == (1, 2)
    assert s.dopamine.item() == pytest.approx(0.0, abs=1e-3)


def test_read_cortex_concatenates_chosen_nodes_and_names_missing_ones():
    from basal_ganglia.striatum import read_cortex

    z = {"v1": torch.ones(2, 3, requires_grad=True), "pfc": torch.zeros(2, 2)}
    s = read_cortex(z, ["pfc", "v1"])
    assert s.shape == (2, 5) and not s.requires_grad
    with pytest.raises(ValueError, match="'m1'"):
        read_cortex(z, ["v1", "m1"])


def test_td_lambda_agent_evaluates_the_uniform_policy_on_the_random_walk():
    import sims.envs  # noqa: F401  (registers brainloop/RandomWalk-v0)
    from basal_ganglia.agents import make_agent

    agent = make_agent("td_lambda", "brainloop/RandomWalk-v0", gamma=1.0, gae_lambda=0.8,
                       hidden=(), learning_rate=0.02, n_steps=64, n_envs=4, seed=0)
    agent.learn(20_000)
    learned = agent.algo.value(torch.eye(5)).detach().numpy()
    np.testing.assert_allclose(learned, RandomWalk(5).true_values(), atol=0.06)
