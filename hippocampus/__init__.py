"""hippocampus — replay memory of transitions and sequences (DESIGN §6): `ReplayMemory` keeps one
ring buffer per environment stream and returns minibatches (`Batch`) and windows in the cortex's
layout (`Sequences`)."""

from hippocampus.replay import Batch, ReplayMemory, Sequences

__all__ = ["Batch", "ReplayMemory", "Sequences"]
