"""Hippocampal replay memory: ring-buffer wrap, sampling, sequences, HDF5 round trip."""

import numpy as np
import pytest

from hippocampus.replay import ReplayMemory


def fill(mem, n, episode_len=5, start=0):
    for k in range(start, start + n):
        end = (k + 1) % episode_len == 0
        mem.add(np.full(2, k), k % 3, float(k), np.full(2, k + 1), end and k % 2 == 0,
                end and k % 2 == 1)


def test_wraps_at_capacity_keeping_the_newest():
    mem = ReplayMemory(8, (2,), action_dtype=np.int64)
    fill(mem, 13)
    assert len(mem) == 8 and mem.pos == 13 % 8
    kept = sorted(mem.data["reward"].tolist())
    assert kept == list(range(5, 13))
    order = mem._chronological()
    assert mem.data["reward"][order].tolist() == list(range(5, 13))


def test_batched_add_equals_single_adds():
    a, b = ReplayMemory(6, (2,)), ReplayMemory(6, (2,))
    obs = np.arange(20, dtype=np.float32).reshape(10, 2)
    a.add(obs, np.zeros((10,)), np.arange(10.0), obs + 1, np.zeros(10, bool), np.zeros(10, bool))
    for i in range(10):
        b.add(obs[i], 0.0, float(i), obs[i] + 1, False, False)
    for k in a.data:
        assert np.array_equal(a.data[k], b.data[k])


def test_uniform_sample_shapes_and_values():
    mem = ReplayMemory(100, (2,), action_dtype=np.int64)
    fill(mem, 30)
    batch = mem.sample(16, np.random.default_rng(0))
    assert batch.obs.shape == (16, 2) and batch.action.shape == (16,)
    assert np.allclose(batch.obs[:, 0].numpy(), batch.reward.numpy())
    assert np.allclose(batch.next_obs[:, 0].numpy(), batch.reward.numpy() + 1)


@pytest.mark.parametrize("capacity,n", [(50, 37), (16, 43)])
def test_sequence_windows_never_cross_episode_boundaries(capacity, n):
    mem = ReplayMemory(capacity, (2,), action_dtype=np.int64)
    fill(mem, n, episode_len=5)
    batch = mem.sample_sequences(200, 4, np.random.default_rng(1))
    r = batch.reward.numpy()
    assert r.shape == (200, 4)
    assert np.all(np.diff(r, axis=1) == 1), "windows are contiguous in time"
    done = (batch.terminated | batch.truncated).numpy()
    assert not done[:, :-1].any(), "only the last step of a window may end an episode"
    # every window lies inside one episode (episodes are blocks of 5 steps)
    assert np.all(r[:, 0] // 5 == r[:, -1] // 5)


def test_sequence_longer_than_any_episode_is_a_clear_error():
    mem = ReplayMemory(50, (2,))
    fill(mem, 20, episode_len=5)
    with pytest.raises(ValueError, match="length 6"):
        mem.sample_sequences(2, 6, np.random.default_rng(0))


def test_prioritised_sampling_prefers_large_td_errors():
    mem = ReplayMemory(10, (2,), alpha=1.0)
    fill(mem, 10)
    mem.update_priorities(np.arange(10), np.r_[np.full(9, 0.01), 10.0])
    batch = mem.sample_prioritised(1000, np.random.default_rng(0), beta=1.0)
    assert (batch.index == 9).mean() > 0.9
    assert batch.weight.max().item() == pytest.approx(1.0)
    assert batch.weight[batch.index == 9].max() < batch.weight.max()


def test_hdf5_round_trip(tmp_path):
    mem = ReplayMemory(8, (2,), action_dtype=np.int64)
    fill(mem, 11)
    mem.save(tmp_path / "replay.h5")
    back = ReplayMemory.load(tmp_path / "replay.h5")
    assert len(back) == 8 and back.capacity == 8
    for k in mem.data:
        assert np.array_equal(mem.data[k][mem._chronological()],
                              back.data[k][back._chronological()])
    np.testing.assert_array_equal(back.valid_starts(3), mem.valid_starts(3))
