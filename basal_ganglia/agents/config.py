"""What every algorithm shares: the config fields of its family and the shape of an update.

An algorithm of the seed's appendix is three things (DESIGN.md §9): a frozen config (a
subclass of `OffPolicyConfig` or `OnPolicyConfig`, every field documented and validated), its
networks, and `update(batch) -> Update` — the losses of one learning step and the dopamine δ of
the batch, computed from the batch alone. The loops that feed it live in `basal_ganglia.loop`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import torch

from cortex.action import TERMS, total
from cortex.params import param, validate


@dataclass(frozen=True)
class AlgorithmConfig:
    """Fields every algorithm has."""

    gamma: float = param(0.99, "discount factor γ", ge=0.0, le=1.0)
    learning_rate: float = param(3e-4, "Adam learning rate", gt=0.0)
    hidden: tuple[int, ...] = param((256, 256), "hidden layer widths of every network", ge=1)

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class OffPolicyConfig(AlgorithmConfig):
    """Fields of the replay-based algorithms (DQN, DDPG, SVG(0), SAC)."""

    buffer_size: int = param(1_000_000, "replay memory capacity (transitions)", ge=1)
    batch_size: int = param(256, "replayed minibatch size", ge=1)
    learning_starts: int = param(100, "env steps of uniformly random actions before learning",
                                 ge=0)
    train_freq: int = param(1, "env steps between training phases", ge=1)
    gradient_steps: int = param(1, "gradient steps per training phase", ge=1)
    tau: float = param(0.005, "Polyak rate τ of the target networks: θ' ← τ θ + (1 − τ) θ'",
                       ge=0.0, le=1.0)
    target_update_interval: int = param(0, "env steps between target updates (0 = one after "
                                        "every gradient step)", ge=0)
    replay: str = param("uniform", "how replay samples transitions: uniform; td_error: "
                        "P(i) ∝ (|δ_i| + ε)^α, δ of the transition's last update; "
                        "prediction_error: P(i) ∝ (the world model's one-step error of the "
                        "transition's next observation)^α (a perception with a world model); "
                        "prioritised losses carry importance weights (N P(i))^−β",
                        choices=("uniform", "td_error", "prediction_error"))
    priority_alpha: float = param(0.6, "priority exponent α of prioritised replay", ge=0.0)
    priority_beta: float = param(0.4, "importance-weight exponent β of prioritised replay",
                                 ge=0.0, le=1.0)
    anneal: bool = param(False, "anneal every learning rate linearly to 0 over a learn call")


@dataclass(frozen=True)
class OnPolicyConfig(AlgorithmConfig):
    """Fields of the rollout-based algorithms (REINFORCE, PPO, TD(λ))."""

    learning_rate: float = param(1e-3, "Adam learning rate (linearly annealed to 0 if anneal)",
                                 gt=0.0)
    hidden: tuple[int, ...] = param((64, 64), "hidden layer widths of policy and V̂ (tanh)",
                                    ge=1)
    n_envs: int = param(8, "parallel environments", ge=1)
    n_steps: int = param(32, "steps per environment per rollout", ge=1)
    gae_lambda: float = param(0.95, "λ of the advantage estimator", ge=0.0, le=1.0)
    advantage: str = param("gae", "advantage estimator", choices=("gae", "truncated",
                                                                  "bias_corrected"))
    vf_coef: float = param(0.5, "weight of the V̂ loss", ge=0.0)
    ent_coef: float = param(0.0, "entropy bonus weight", ge=0.0)
    max_grad_norm: float = param(0.5, "gradient norm clip", gt=0.0)
    normalize_advantage: bool = param(True, "standardise advantages per minibatch")
    anneal: bool = param(True, "anneal learning rate (and PPO's clip range) linearly to 0")


@dataclass
class Update:
    """What one learning step returns: its losses (name → value), the dopamine δ of the batch
    (B,) (or (T, N) for a rollout), and the terms of the action free energy (seed Eq. 2,
    `cortex.action.TERMS`) when the step trained a policy."""

    losses: dict[str, float]
    delta: torch.Tensor
    free_energy: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Spaces:
    """What an algorithm is built for: the dimension of the perceived state z, the
    environment's action space (Discrete or 1-D Box) and the number of reward bases K (1: a
    scalar reward)."""

    state_dim: int
    action_space: gym.Space
    n_bases: int = 1

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    @property
    def action_dim(self) -> int:
        """Number of actions (Discrete) or the dimension of the action box."""
        space = self.action_space
        return int(space.n) if self.discrete else int(space.shape[0])


def optimizers(algo) -> list[torch.optim.Optimizer]:
    """The optimisers an algorithm holds (its attributes that are one)."""
    return [v for v in vars(algo).values() if isinstance(v, torch.optim.Optimizer)]


def scale_learning_rates(optimizers: list[torch.optim.Optimizer], scale: float) -> None:
    """Set the learning rate of every parameter group to its initial rate × `scale`."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * scale


def free_energy_floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """The six action free-energy terms and their total as floats, for recording."""
    out = {k: float(terms[k].detach()) for k in TERMS}
    out["total"] = float(total(terms).detach())
    return out
