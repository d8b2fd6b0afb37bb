"""The perception slot of the closed loop (DESIGN.md §9): what the basal ganglia see.

A perception turns the observation x_t and the last action a_{t−1} (the efference copy) into
the state of named cortical columns, `{node: (B, d_node)}`; the policy and the critics read the
columns the configuration names (`basal_ganglia.striatum.read_cortex`). Its contract:

    reset(done=None)            forget the past of every stream (or of the streams where done)
    perceive(x, a_prev) -> z    {node: (B, d)}, detached
    replayed(batch) -> z, z'    the states of replayed transitions (a model re-infers them)
    learn(sequences) -> dict    one world-model step on replayed sequences; returns its losses
    nodes, dims                 the columns it offers and their widths
    sequence_length, layout     the replayed window its world model learns from (0: no model)
                                and which observation dimensions each observed column takes

`RawPerception` is the observation itself, as the single column `x`: the agents of the RL
literature. A perception replaces its state tensors rather than mutating them, so a shallow
copy (`copy.copy`) perceives independently with the same model — evaluation episodes use one.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch


class RawPerception:
    """z = {"x": x_t}: no model, nothing to learn."""

    node = "x"
    sequence_length = 0  # no world model
    layout = None

    def __init__(self, observation_space: gym.Space, device: torch.device | str = "cpu"):
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"raw perception needs a 1-D Box observation space, got "
                             f"{observation_space}")
        self.dims = {self.node: int(observation_space.shape[0])}
        self.device = torch.device(device)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self.dims)

    def reset(self, done=None) -> None:
        """Nothing to forget: the raw observation has no past."""

    def perceive(self, x, a_prev=None) -> dict[str, torch.Tensor]:
        """x: (B, d_x) observations → {"x": (B, d_x)} float32 on the device."""
        z = torch.as_tensor(np.asarray(x, np.float32), device=self.device)
        if z.ndim != 2 or z.shape[1] != self.dims[self.node]:
            raise ValueError(f"raw perception expects observations of shape (B, "
                             f"{self.dims[self.node]}), got {tuple(z.shape)}")
        return {self.node: z}

    def replayed(self, batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """States {node: (B, d)} of a replayed batch's obs and next_obs: the observations."""
        return {self.node: batch.obs}, {self.node: batch.next_obs}

    def learn(self, sequences) -> dict[str, float]:
        """No world model: nothing to learn."""
        return {}
