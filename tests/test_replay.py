"""Hippocampal replay memory: ring-buffer wrap, streams kept apart, sampling, windows in the
cortex's layout, vector rewards, HDF5 round trip."""

import numpy as np
import pytest
import torch

from hippocampus.replay import ReplayMemory, Sequences


def fill(mem, n, episode_len=5, start=0):
    for k in range(start, start + n):
        end = (k + 1) % episode_len == 0
        mem.add(np.full(2, k), k % 3, float(k), np.full(2, k + 1), end and k % 2 == 0,
                end and k % 2 == 1)


def interleaved(mem, steps, episode_lens=(5, 7), truncate_every=3):
    """Feed streams alternately; obs = (stream id, time step, episode id) of each stream.

    Stream k's episodes last episode_lens[k] steps; every `truncate_every`-th episode ends by
    truncation instead of termination.
    """
    episode = [0] * mem.n_streams
    for t in range(steps):
        for k in range(mem.n_streams):
            end = (t + 1) % episode_lens[k] == 0
            cut = end and (episode[k] + 1) % truncate_every == 0
            obs = np.array([k, t, episode[k]], np.float32)
            mem.add(obs, np.array([0.1 * k], np.float32), float(t), obs + [0, 1, 0],
                    end and not cut, cut, stream=k)
            episode[k] += end


# ---- ring buffer and adding --------------------------------------------------------------

def test_wraps_at_capacity_keeping_the_newest():
    mem = ReplayMemory(8, (2,), action_dtype=np.int64)
    fill(mem, 13)
    assert len(mem) == 8 and mem.pos.tolist() == [13 % 8]
    assert sorted(mem.data["reward"][0].tolist()) == list(range(5, 13))
    assert mem.latest(8).reward.tolist() == list(range(5, 13))


def test_batched_add_equals_single_adds():
    a, b = ReplayMemory(6, (2,)), ReplayMemory(6, (2,))
    obs = np.arange(20, dtype=np.float32).reshape(10, 2)
    a.add(obs, np.zeros((10,)), np.arange(10.0), obs + 1, np.zeros(10, bool), np.zeros(10, bool))
    for i in range(10):
        b.add(obs[i], 0.0, float(i), obs[i] + 1, False, False)
    for k in a.data:
        assert np.array_equal(a.data[k], b.data[k])
    assert a.pos.tolist() == b.pos.tolist() and len(a) == len(b) == 6


def test_lock_step_add_equals_per_stream_adds():
    a, b = ReplayMemory(12, (2,), n_streams=3), ReplayMemory(12, (2,), n_streams=3)
    for t in range(6):  # 6 steps into 4 slots per stream: wraps
        obs = np.stack([np.full(2, 10 * k + t, np.float32) for k in range(3)])
        done = np.array([t == 2, False, t == 4])
        a.add(obs, np.zeros(3), np.full(3, float(t)), obs + 1, done, np.zeros(3, bool))
        for k in range(3):
            b.add(obs[k], 0.0, float(t), obs[k] + 1, done[k], False, stream=k)
    for k in a.data:
        assert np.array_equal(a.data[k], b.data[k])
    assert a.pos.tolist() == [6 % 4] * 3 and len(a) == 12
    last = a.latest()
    assert last.obs[:, 0].tolist() == [5, 15, 25]


def test_capacity_is_the_total_split_between_streams():
    mem = ReplayMemory(10, (1,), n_streams=3)
    assert mem.per_stream == 3 and mem.data["obs"].shape == (3, 3, 1)
    with pytest.raises(ValueError, match="capacity 2 .* n_streams 3"):
        ReplayMemory(2, (1,), n_streams=3)


def test_bad_shapes_name_the_field_and_the_expected_shape():
    mem = ReplayMemory(8, (3,), (2,), n_streams=2)
    good = dict(obs=np.zeros((2, 3)), action=np.zeros((2, 2)), reward=np.zeros(2),
                next_obs=np.zeros((2, 3)), terminated=np.zeros(2, bool), truncated=np.zeros(2, bool))
    with pytest.raises(ValueError, match=r"action has shape \(2, 3\); expected \(2, 2\)"):
        mem.add(**{**good, "action": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"obs has shape \(3,\); expected \(2, 3\)"):
        mem.add(**{**good, "obs": np.zeros(3)})
    with pytest.raises(ValueError, match=r"reward has shape \(2,\); expected \(\)"):
        mem.add(np.zeros(3), np.zeros(2), np.zeros(2), np.zeros(3), False, False, stream=0)
    with pytest.raises(ValueError, match="stream"):
        mem.add(np.zeros(3), np.zeros(2), 0.0, np.zeros(3), False, False, stream=2)
    assert len(mem) == 0


# ---- uniform and prioritised sampling ----------------------------------------------------

def test_uniform_sample_shapes_and_values():
    mem = ReplayMemory(100, (2,), action_dtype=np.int64)
    fill(mem, 30)
    batch = mem.sample(16, np.random.default_rng(0))
    assert batch.obs.shape == (16, 2) and batch.action.shape == (16,)
    assert np.allclose(batch.obs[:, 0].numpy(), batch.reward.numpy())
    assert np.allclose(batch.next_obs[:, 0].numpy(), batch.reward.numpy() + 1)


@pytest.mark.parametrize("capacity,n", [(50, 37), (16, 43)])
def test_one_stream_sample_draws_exactly_as_before(capacity, n):
    """The RL benchmarks depend on this: the same generator calls, the same slots, in order."""
    mem = ReplayMemory(capacity, (2,), action_dtype=np.int64)
    fill(mem, n)
    rng = np.random.default_rng(0)
    batch = mem.sample(64, rng)
    slots = np.random.default_rng(0).integers(0, min(n, capacity), 64)
    np.testing.assert_array_equal(batch.index, slots)
    np.testing.assert_array_equal(batch.reward.numpy(), mem.data["reward"][0, slots])
    np.testing.assert_array_equal(batch.action.numpy(), mem.data["action"][0, slots])
    # the generator is left where a single integers() call leaves it
    follow = np.random.default_rng(0)
    follow.integers(0, min(n, capacity), 64)
    assert rng.random() == follow.random()


def test_uniform_sample_over_several_streams_covers_them_all_and_maps_slots():
    mem = ReplayMemory(30, (3,), (1,), n_streams=3)
    interleaved(mem, 4, episode_lens=(5, 5, 5))
    mem.add(np.array([1, 4, 0.0]), [0.1], 4.0, np.array([1, 5, 0.0]), False, False, stream=1)
    assert mem.size.tolist() == [4, 5, 4] and len(mem) == 13
    batch = mem.sample(500, np.random.default_rng(2))
    flat = np.random.default_rng(2).integers(0, 13, 500)
    stream = np.searchsorted([4, 9], flat, side="right")
    assert np.array_equal(batch.obs[:, 0].numpy(), stream)
    assert np.array_equal(batch.index, stream * mem.per_stream + flat - np.r_[0, 4, 9][stream])
    assert set(batch.obs[:, 0].tolist()) == {0, 1, 2}


def test_prioritised_sampling_prefers_large_td_errors():
    mem = ReplayMemory(10, (2,), alpha=1.0)
    fill(mem, 10)
    mem.update_priorities(np.arange(10), np.r_[np.full(9, 0.01), 10.0])
    batch = mem.sample_prioritised(1000, np.random.default_rng(0), beta=1.0)
    assert (batch.index == 9).mean() > 0.9
    assert batch.weight.max().item() == pytest.approx(1.0)
    assert batch.weight[batch.index == 9].max() < batch.weight.max()


def test_prioritised_sampling_across_streams_uses_the_flat_index():
    mem = ReplayMemory(12, (3,), (1,), n_streams=2, alpha=1.0)
    interleaved(mem, 4)
    mem.update_priorities(np.arange(12), np.full(12, 0.001))
    target = 1 * mem.per_stream + 2  # stream 1, slot 2
    mem.update_priorities(np.array([target]), np.array([50.0]))
    batch = mem.sample_prioritised(500, np.random.default_rng(1), beta=1.0)
    hit = batch.index == target
    assert hit.mean() > 0.9
    assert (batch.obs[hit, 0] == 1).all() and (batch.obs[hit, 1] == 2).all()


# ---- windows in the cortex's layout ------------------------------------------------------

def check_windows(seq: Sequences, length: int):
    """Every window: one stream, consecutive time steps, one episode; provenance consistent."""
    obs = seq.obs["x"].numpy()  # (T, B, 3) = (stream id, time step, episode id)
    assert obs.shape[0] == length
    assert np.all(obs[:, :, 0] == obs[0, :, 0]), "a window mixes streams"
    assert np.all(np.diff(obs[:, :, 1], axis=0) == 1), "a window skips or repeats time steps"
    assert np.all(obs[:, :, 2] == obs[0, :, 2]), "a window crosses an episode end"
    assert np.array_equal(obs[0, :, 0], seq.stream)
    done = (seq.terminated | seq.truncated).numpy()
    assert not done[:-1].any(), "only the last step of a window may end an episode"


def test_sequences_from_two_interleaved_streams_never_mix_them():
    mem = ReplayMemory(400, (3,), (1,), n_streams=2)
    interleaved(mem, 90)
    seq = mem.sequences(1000, 4, np.random.default_rng(0))
    check_windows(seq, 4)
    assert set(seq.stream.tolist()) == {0, 1}
    # provenance: step t of window b is slot (start + t) % per_stream of its stream
    slot = (seq.start[None, :] + np.arange(4)[:, None]) % mem.per_stream
    assert np.array_equal(seq.obs["x"].numpy(), mem.data["obs"][seq.stream[None, :], slot])
    assert np.array_equal(seq.next_obs["x"].numpy()[:-1], seq.obs["x"].numpy()[1:])


def test_windows_never_cross_an_episode_end_including_a_truncation():
    mem = ReplayMemory(400, (3,), (1,), n_streams=2)
    interleaved(mem, 60, truncate_every=2)
    assert mem.data["truncated"].any() and mem.data["terminated"].any()
    seq = mem.sequences(2000, 5, np.random.default_rng(3))
    check_windows(seq, 5)
    # stream 0's episodes last exactly 5 steps, so its windows are whole episodes, ending at
    # a termination or a truncation, both of which are drawn
    zero = seq.stream == 0
    assert np.all(seq.obs["x"][0, zero, 1].numpy() % 5 == 0)
    assert seq.truncated[-1, zero].any() and seq.terminated[-1, zero].any()
    # a window one step longer than stream 0's episodes only fits in stream 1
    assert set(mem.sequences(200, 6, np.random.default_rng(0)).stream.tolist()) == {1}


@pytest.mark.parametrize("steps", [23, 24, 37])
def test_windows_never_jump_across_the_overwrite_point(steps):
    # 10 slots per stream, overwritten 2-3 times; episodes longer than the ring, so only the
    # overwrite point could break a window's time order
    mem = ReplayMemory(20, (3,), (1,), n_streams=2)
    interleaved(mem, steps, episode_lens=(1000, 1000))
    seq = mem.sequences(3000, 10, np.random.default_rng(0))
    check_windows(seq, 10)
    assert np.all(seq.obs["x"][0].numpy()[:, 1] == steps - 10), "the only fitting window is the whole ring"
    seq = mem.sequences(3000, 4, np.random.default_rng(1))
    check_windows(seq, 4)
    assert set(seq.obs["x"][0, :, 1].int().tolist()) == set(range(steps - 10, steps - 3))


def test_valid_starts_count_chronologically_in_the_stream():
    mem = ReplayMemory(16, (2,), action_dtype=np.int64)
    fill(mem, 43, episode_len=5)  # newest 16 rewards: 27 .. 42, episode ends after 29, 34, 39
    assert mem.valid_starts(4).tolist() == [3, 4, 8, 9]  # 30-33, 31-34, 35-38, 36-39
    assert mem.valid_starts(17).tolist() == []


def test_layout_and_one_hot_action_shapes():
    mem = ReplayMemory(50, (5,), action_dtype=np.int64)
    for t in range(20):
        mem.add(np.arange(5) + 10.0 * t, t % 3, float(t), np.arange(5) + 10.0 * (t + 1), False, False)
    seq = mem.sequences(7, 3, np.random.default_rng(0), layout={"pos": slice(0, 2), "vel": [4, 2]},
                        n_actions=3)
    assert set(seq.obs) == {"pos", "vel"}
    assert seq.obs["pos"].shape == (3, 7, 2) and seq.obs["vel"].shape == (3, 7, 2)
    assert seq.obs["pos"].dtype == torch.float32
    t = seq.reward  # (T, B): reward is the time step
    assert torch.equal(seq.obs["vel"], torch.stack([10 * t + 4, 10 * t + 2], -1))
    assert torch.equal(seq.next_obs["pos"], torch.stack([10 * t + 10, 10 * t + 11], -1))
    assert seq.actions.shape == (3, 7, 3) and seq.actions.dtype == torch.float32
    assert torch.equal(seq.actions.argmax(-1), (t % 3).long()) and torch.all(seq.actions.sum(-1) == 1)
    assert seq.terminated.shape == seq.truncated.shape == (3, 7) and seq.terminated.dtype == torch.bool
    assert seq.stream.shape == seq.start.shape == (7,) and seq.stream.dtype == np.int64


def test_continuous_actions_keep_their_values_and_scalars_get_an_axis():
    mem = ReplayMemory(30, (2,), ())
    fill(mem, 20, episode_len=100)
    seq = mem.sequences(4, 6, np.random.default_rng(0))
    assert seq.obs["x"].shape == (6, 4, 2) and seq.actions.shape == (6, 4, 1)
    assert torch.equal(seq.actions[..., 0], seq.reward % 3)


@pytest.mark.parametrize("layout,match", [
    ({"a": slice(0, 4)}, "'a'.*outside"),
    ({"a": [0, 3]}, "'a'.*outside"),
    ({"a": [0, 1], "b": [1, 2]}, r"'b'.*\[1\].*\['a'\]"),
    ({"a": slice(0, 2), "b": slice(1, 3)}, "'b'.*already observed"),
    ({"a": [0.5]}, "'a'.*integer"),
    ({"a": []}, "'a' observes no dimension"),
    ({"a": [1, 1]}, "'a' names a dimension twice"),
    ({}, "layout is empty"),
])
def test_bad_layouts_name_the_node(layout, match):
    mem = ReplayMemory(10, (3,))
    fill3 = np.zeros(3)
    for _ in range(3):
        mem.add(fill3, 0.0, 0.0, fill3, False, False)
    with pytest.raises(ValueError, match=match):
        mem.sequences(2, 2, np.random.default_rng(0), layout=layout)


def test_action_encoding_errors():
    mem = ReplayMemory(10, (2,), action_dtype=np.int64)
    fill(mem, 6, episode_len=100)
    with pytest.raises(ValueError, match="pass n_actions"):
        mem.sequences(2, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_actions=2 does not cover"):
        mem.sequences(2, 2, np.random.default_rng(0), n_actions=2)
    cont = ReplayMemory(10, (2,), (1,))
    cont.add(np.zeros(2), [0.5], 0.0, np.zeros(2), False, False)
    with pytest.raises(ValueError, match="continuous actions"):
        cont.sequences(1, 1, np.random.default_rng(0), n_actions=3)


def test_clear_errors_for_empty_memory_and_windows_that_do_not_fit():
    mem = ReplayMemory(50, (2,), n_streams=2)
    rng = np.random.default_rng(0)
    for call in (lambda: mem.sample(2, rng), lambda: mem.sample_prioritised(2, rng),
                 lambda: mem.sequences(2, 2, rng)):
        with pytest.raises(ValueError, match="empty replay memory"):
            call()
    with pytest.raises(ValueError, match="latest 1"):
        mem.latest()
    for k in range(20):
        end = (k + 1) % 5 == 0
        mem.add(np.zeros(2), 0.0, float(k), np.zeros(2), end, False, stream=k % 2)
    with pytest.raises(ValueError, match=r"length 6 .* 20 stored transitions .*\[10, 10\]"):
        mem.sequences(2, 6, rng)
    with pytest.raises(ValueError, match="length 30"):
        mem.sequences(2, 30, rng)


# ---- vector rewards and files ------------------------------------------------------------

def test_vector_rewards_on_every_path():
    mem = ReplayMemory(20, (2,), (1,), n_streams=2, reward_shape=(3,))
    for t in range(8):
        obs = np.stack([np.full(2, t), np.full(2, 100 + t)]).astype(np.float32)
        r = np.stack([[t, 2 * t, -t], [100 + t, 0, 1]]).astype(np.float32)
        mem.add(obs, np.zeros((2, 1)), r, obs + 1, np.zeros(2, bool), np.zeros(2, bool))
    with pytest.raises(ValueError, match=r"reward has shape \(2,\); expected \(2, 3\)"):
        mem.add(obs, np.zeros((2, 1)), np.zeros(2), obs + 1, np.zeros(2, bool), np.zeros(2, bool))
    for batch in (mem.sample(9, np.random.default_rng(0)),
                  mem.sample_prioritised(9, np.random.default_rng(0)), mem.latest(2)):
        assert batch.reward.shape == (len(batch.index), 3)
        assert torch.equal(batch.reward[:, 0], batch.obs[:, 0])
    seq = mem.sequences(5, 4, np.random.default_rng(0))
    assert seq.reward.shape == (4, 5, 3)
    assert torch.equal(seq.reward[..., 0], seq.obs["x"][..., 0])


def test_hdf5_round_trip_resumes_several_streams_with_vector_rewards(tmp_path):
    mem = ReplayMemory(21, (3,), (1,), n_streams=2, reward_shape=(2,), alpha=0.7, eps=1e-3)
    for t in range(13):  # stream 0 wraps its 10 slots, stream 1 holds 4
        obs = np.array([0, t, t // 4], np.float32)
        mem.add(obs, [0.5 * t], [t, -t], obs + [0, 1, 0], t % 4 == 3, False, stream=0)
        if t % 3 == 0:
            obs = np.array([1, t, 0], np.float32)
            mem.add(obs, [-0.5 * t], [t, t], obs + [0, 1, 0], False, t == 12, stream=1)
    mem.update_priorities(np.arange(14), np.linspace(0.1, 2, 14))
    path = tmp_path / "replay.h5"
    mem.save(path)
    back = ReplayMemory.load(path)
    assert (back.capacity, back.n_streams, back.alpha, back.eps) == (21, 2, 0.7, 1e-3)
    assert back.pos.tolist() == mem.pos.tolist() and back.size.tolist() == mem.size.tolist()
    assert back.dtypes == mem.dtypes and back.shapes == mem.shapes
    for k in mem.data:
        np.testing.assert_array_equal(back.data[k], mem.data[k])
    np.testing.assert_array_equal(back.priority, mem.priority)
    for draw in (lambda m, rng: m.sample(32, rng), lambda m, rng: m.sample_prioritised(32, rng)):
        a, b = draw(mem, np.random.default_rng(5)), draw(back, np.random.default_rng(5))
        np.testing.assert_array_equal(a.index, b.index)
        assert torch.equal(a.obs, b.obs) and torch.equal(a.reward, b.reward)
        assert torch.equal(a.weight, b.weight)
    a = mem.sequences(16, 3, np.random.default_rng(5))
    b = back.sequences(16, 3, np.random.default_rng(5))
    assert torch.equal(a.obs["x"], b.obs["x"]) and torch.equal(a.actions, b.actions)
    # adding after load continues each stream where it stopped
    for m in (mem, back):
        m.add(np.zeros(3), [0.0], [0, 0], np.zeros(3), False, False, stream=0)
    np.testing.assert_array_equal(back.data["obs"], mem.data["obs"])


def test_hdf5_round_trip_of_one_discrete_stream(tmp_path):
    mem = ReplayMemory(8, (2,), action_dtype=np.int64)
    fill(mem, 11)
    mem.save(tmp_path / "replay.h5")
    mem.save(tmp_path / "replay.h5")  # a replay file may be replaced
    back = ReplayMemory.load(tmp_path / "replay.h5")
    assert len(back) == 8 and back.capacity == 8 and back.data["action"].dtype == np.int64
    np.testing.assert_array_equal(back.valid_starts(3), mem.valid_starts(3))
    np.testing.assert_array_equal(back.sample(10, np.random.default_rng(0)).index,
                                  mem.sample(10, np.random.default_rng(0)).index)
    empty = ReplayMemory(6, (2,), n_streams=3)
    empty.save(tmp_path / "empty.h5")
    assert len(ReplayMemory.load(tmp_path / "empty.h5")) == 0


def test_files_that_are_not_replay_files_are_refused_by_name(tmp_path):
    import h5py

    mem = ReplayMemory(8, (2,))
    fill(mem, 3)
    text = tmp_path / "notes.txt"
    text.write_text("keep me")
    with pytest.raises(ValueError, match="notes.txt exists and is not a brainloop replay file"):
        mem.save(text)
    assert text.read_text() == "keep me"
    with pytest.raises(ValueError, match="notes.txt is not a brainloop replay file"):
        ReplayMemory.load(text)
    rec = tmp_path / "recording.h5"
    with h5py.File(rec, "w") as f:
        f.create_dataset("cortex/free_energy", data=np.ones(3))
    with pytest.raises(ValueError, match="recording.h5"):
        mem.save(rec)
    with pytest.raises(ValueError, match="recording.h5"):
        ReplayMemory.load(rec)
    broken = tmp_path / "broken.h5"
    mem.save(broken)
    with h5py.File(broken, "a") as f:
        del f["pos"]
    with pytest.raises(ValueError, match="broken.h5 is not a valid brainloop replay file"):
        ReplayMemory.load(broken)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        ReplayMemory.load(tmp_path / "missing.h5")


def test_end_episode_stops_sequences_at_the_newest_transition():
    mem = ReplayMemory(40, (1,), n_streams=2)
    for t in range(6):
        mem.add(np.full((2, 1), t), np.zeros(2), np.zeros(2), np.full((2, 1), t + 1),
                np.zeros(2, bool), np.zeros(2, bool))
    mem.end_episode(stream=1)
    for t in range(6, 10):
        mem.add(np.full((2, 1), t), np.zeros(2), np.zeros(2), np.full((2, 1), t + 1),
                np.zeros(2, bool), np.zeros(2, bool))
    seq = mem.sequences(500, 8, np.random.default_rng(0))
    # stream 0 runs on across step 5; stream 1's windows stay on one side of the cut
    assert set(seq.stream.tolist()) == {0}
    assert mem.data["truncated"][1, 5] and not mem.data["truncated"][0].any()
    ReplayMemory(4, (1,)).end_episode()  # an empty memory has nothing to close
