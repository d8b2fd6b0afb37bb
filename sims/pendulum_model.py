"""pendulum-model: a temporal PC world model of a driven pendulum, judged by imagination.

A damped pendulum driven by a random piecewise-constant torque is observed as
``(cos th, sin th, omega/4)`` or, in the partially observed variant, as ``(cos th, sin th)``
alone, so that the velocity must be carried by the hidden state. The model is one temporal
column ``s`` (its own past through U, the torque through B — the efference copy) predicting the
observation column ``x``; it learns from episodes with the local rule, inferring each step as
it comes (``window=1``) or re-inferring the last W steps (``window=W``, where a state also
feels the error it causes one step later).

On held-out episodes the model filters for ``warmup`` steps, then imagines ``horizon`` steps
ahead under the torques actually applied (:func:`cortex.rollout`), from many start points.
Summary figures: ``prediction_error_10`` (mean squared error of the imagined observation
``horizon`` steps ahead, summed over observation dimensions) and ``nochange_error_10`` (the
same for predicting that nothing changes), and their ratio ``improvement_10``; with
``validation_episodes`` they are those of the epoch with the lowest validation error
(``selected_epoch``), while ``metrics/`` keeps every epoch's test figures. Recorded per
training batch: ``cortex/free_energy`` (F per time step with its log-normalisers, batch mean; its
expectation under q for the Laplace posterior), which stops the run when it becomes non-finite
or explodes (key ``lr``), ``cortex/<node>/error_rms`` and, for learned precisions,
``cortex/<node>/precision``; at the end ``pendulum/*`` (errors against the horizon, one imagined
episode).

With the point-mass posterior (``posterior="point"``, the default) the partially observed
variant learns to about 2.5x, while a model that learned with the velocity observed reaches 12x
when it is given (cos, sin) alone; ``benchmarks/pendulum_partial.py`` measures why (the window
objective rewards hindsight; under filtering the local rule does not descend F). With a Gaussian
posterior (``posterior="laplace"``: the extended Kalman filter of :mod:`cortex.laplace`, learned
by EM with the smoother) the uncertainty's cross-covariances let an angle error correct the
velocity, and learning from (cos, sin) alone reaches 7-35x on five seeds at the epoch chosen on
validation episodes (3-37x at the last epoch); ``benchmarks/RESULTS.md`` gives the settings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from cortex import InferenceConfig, PCModel, rollout, run_sequence
from cortex.graph import hidden_names, sensory_chain
from cortex.activations import ACTIVATIONS
from cortex.laplace import expected_free_energy, laplace_filter, learn_sequences_laplace, mean_errors
from cortex.params import check_finite, param, validate
from sims.registry import Simulation, register
from sims.runner import Context


@dataclass(frozen=True)
class PendulumModelConfig:
    partial: bool = param(False, "observe (cos, sin) only: the velocity must be inferred")
    hidden: tuple[int, ...] = param(
        (32,), "widths of the hidden temporal columns, top first; each predicts the next, the last predicts x", ge=1)
    activation: str = param("tanh", "f of the hidden column", choices=ACTIVATIONS)
    posterior: str = param(
        "point", "point: the point-mass posterior with the local rule (DESIGN.md section 3); laplace: a "
        "Gaussian posterior (extended Kalman filter), learned by EM with the smoother and closed-form "
        "precisions (cortex.laplace; one hidden column, window 1, no dropout)", choices=("point", "laplace"))
    obs_precision: float = param(1.0, "precision of the observation column x (1/variance)", gt=0)
    state_precision: float = param(1.0, "initial precision of the hidden column (1/variance of its transition noise)",
                                   gt=0)
    precision_rate: float = param(
        0.05, "laplace: share of the way each batch moves the precisions to their closed-form M-step", ge=0, le=1)
    min_variance: float = param(1e-5, "laplace: floor of every learned variance 1/precision", gt=0)
    grad_clip: float = param(
        0.0, "laplace: rescale each EM step's weight gradient to at most this norm (0 = off)", ge=0)
    lr_schedule: str = param(
        "constant", "constant, or cosine: the step size falls to 0 over the run along a half cosine",
        choices=("constant", "cosine"))
    dropout: float = param(
        0.0, "share of training steps whose observation is withheld (the model must bridge the gap with its "
        "own prior, which teaches multi-step consistency)", ge=0, lt=1)
    window: int = param(1, "steps re-inferred together (1 = filtering)", ge=1)
    epochs: int = param(8, "passes over the training episodes", ge=1)
    train_episodes: int = param(512, "training episodes", ge=1)
    test_episodes: int = param(64, "held-out episodes", ge=1)
    episode_steps: int = param(60, "time steps per episode; more than warmup + horizon", ge=2)
    batch: int = param(32, "episodes per learning batch", ge=1)
    lr: float = param(1e-3, "Adam step size on theta (one step per time step)", gt=0)
    weight_decay: float = param(
        0.0, "decoupled weight decay on every parameter (AdamW): bounds the readout's growth, but also "
        "shrinks U; see benchmarks/RESULTS.md", ge=0)
    inference_steps: int = param(20, "inference iterations per time step", ge=0)
    inference_lr: float = param(0.1, "inference step size", gt=0)
    inference_momentum: float = param(
        0.0, "heavy-ball momentum of inference (a window of W steps needs more iterations to converge "
        "than one step: momentum gets there in fewer)", ge=0, lt=1)
    validation_episodes: int = param(
        0, "0: report the model of the last epoch; n: also simulate n validation episodes and report (on "
        "the held-out test episodes) the model of the epoch with the lowest validation error", ge=0)
    horizon: int = param(10, "imagination horizon n of the headline error", ge=1)
    warmup: int = param(20, "filtering steps before the first imagined start point", ge=0)
    dt: float = param(0.05, "time step (s)", gt=0)
    damping: float = param(0.2, "viscous damping (1/s)", ge=0)
    max_torque: float = param(2.0, "torques are uniform in +-max_torque", ge=0)
    hold: int = param(5, "steps each random torque is held", ge=1)

    def __post_init__(self) -> None:
        validate(self)
        if not self.hidden:
            raise ValueError("config key 'hidden' needs at least one hidden column width")
        if self.warmup + self.horizon >= self.episode_steps:
            raise ValueError(f"config key 'episode_steps' = {self.episode_steps} must exceed warmup + horizon "
                             f"= {self.warmup + self.horizon}: no start point is left to imagine from")
        if self.posterior == "laplace":
            for key, ok, want in (("hidden", len(self.hidden) == 1, "one hidden column"),
                                  ("window", self.window == 1, "window=1 (the filter; learning smooths whole "
                                                               "episodes)"),
                                  ("dropout", self.dropout == 0, "dropout=0")):
                if not ok:
                    raise ValueError(f"config key {key!r}: posterior='laplace' needs {want}, got "
                                     f"{key}={getattr(self, key)}")
        elif self.grad_clip:
            raise ValueError(f"config key 'grad_clip' applies to posterior='laplace' only, got "
                             f"grad_clip={self.grad_clip} with posterior='point'")


def simulate(cfg: PendulumModelConfig, episodes: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Observations ``(T, E, d)``, torques ``(T, E, 1)`` (applied after each observation) and the
    angle/velocity ``(T, E, 2)``; th'' = -g sin th - c th' + u, 10 semi-implicit Euler substeps."""
    steps = cfg.episode_steps
    theta = (torch.rand(episodes, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
    omega = torch.rand(episodes, generator=gen, dtype=torch.float64) * 2 - 1
    n_holds = -(-steps // cfg.hold)
    torque = (torch.rand(n_holds, episodes, generator=gen, dtype=torch.float64) * 2 - 1) * cfg.max_torque
    torque = torque.repeat_interleave(cfg.hold, 0)[:steps]
    obs, state = [], []
    substeps = 10
    for t in range(steps):
        state.append(torch.stack([theta, omega], -1))
        obs.append(torch.stack([torch.cos(theta), torch.sin(theta), omega / 4], -1))
        for _ in range(substeps):
            omega = omega + cfg.dt / substeps * (-9.81 * torch.sin(theta) - cfg.damping * omega + torque[t])
            theta = theta + cfg.dt / substeps * omega
    x = torch.stack(obs)
    if cfg.partial:
        x = x[..., :2]
    return x.float(), torque.unsqueeze(-1).float(), torch.stack(state).float()


def world_model(cfg: PendulumModelConfig, obs_dim: int, gen: torch.Generator) -> PCModel:
    g = sensory_chain(cfg.hidden, obs_dim, activation=cfg.activation,
                      state_precision=cfg.state_precision, obs_precision=cfg.obs_precision,
                      learn_precision=cfg.posterior == "laplace")
    return PCModel(g, temporal=True, action_dim=1, generator=gen)


def train_epoch(model: PCModel, optimizer: torch.optim.Optimizer, x: Tensor, u: Tensor,
                cfg: PendulumModelConfig, infer_cfg: InferenceConfig, gen: torch.Generator):
    """One pass over the training episodes in random batches; yields each batch's free energy
    per step (batch mean) and RMS prediction error per column. The point posterior learns
    online at every step; the Laplace posterior takes one EM step per batch of episodes."""
    episodes = x.shape[1]
    order = torch.randperm(episodes, generator=gen).to(x.device)
    for start in range(0, episodes, cfg.batch):
        idx = order[start:start + cfg.batch]
        obs, actions = {"x": x[:, idx]}, u[:, idx]
        if cfg.posterior == "laplace":
            path = learn_sequences_laplace(model, optimizer, obs, actions, precision_rate=cfg.precision_rate,
                                           min_variance=cfg.min_variance, max_grad_norm=cfg.grad_clip or None)
            with torch.no_grad():
                energy = expected_free_energy(model, path, obs, actions).item()
            errors = mean_errors(model, path, obs, actions)
        else:
            missing = None
            if cfg.dropout > 0:
                missing = (torch.rand(x.shape[0], len(idx), generator=gen) < cfg.dropout).to(x.device)
            traj = run_sequence(model, obs, actions, infer_cfg, window=cfg.window, optimizer=optimizer,
                                missing=missing)
            energy, errors = sum(traj.energy.values()).mean().item(), traj.errors
        yield energy, {node: e.pow(2).mean().sqrt().item() for node, e in errors.items()}


def filtered_states(model: PCModel, x: Tensor, u: Tensor, cfg: PendulumModelConfig,
                    infer_cfg: InferenceConfig) -> dict[str, Tensor]:
    """The online state estimates ``{hidden node: (T, B, d)}`` on sequences: the point posterior's
    (filtering or the newest step of a window) or the Laplace filter's means."""
    if cfg.posterior == "laplace":
        return {hidden_names(len(cfg.hidden))[0]: laplace_filter(model, {"x": x}, u).mean.to(model.dtype)}
    return run_sequence(model, {"x": x}, u, infer_cfg, window=cfg.window).z


def imagination_errors(model: PCModel, x: Tensor, u: Tensor, cfg: PendulumModelConfig,
                       infer_cfg: InferenceConfig, scored: int | None = None,
                       ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Squared error of imagined vs true observations for k = 1..horizon, ``(horizon,)``, for the
    model and for "no change", averaged over start points t >= warmup and episodes; summed over
    the first ``scored`` observation dimensions (all by default)."""
    z = filtered_states(model, x, u, cfg, infer_cfg)
    h = cfg.horizon
    starts = list(range(cfg.warmup, x.shape[0] - h))
    if not starts:
        raise ValueError(f"episode_steps={x.shape[0]} leaves no start point after warmup={cfg.warmup} "
                         f"for horizon={h}")
    batch = x.shape[1]
    state = model.to_grouped({n: torch.cat([z[n][t] for t in starts]) for n in hidden_names(len(cfg.hidden))},
                             batch * len(starts))
    actions = torch.cat([u[t:t + h] for t in starts], dim=1)
    imagined = rollout(model, state, actions)["x"]
    truth = torch.cat([x[t + 1:t + 1 + h] for t in starts], dim=1)
    still = torch.cat([x[t:t + 1].expand(h, -1, -1) for t in starts], dim=1)
    imagined, truth, still = (v[..., :scored] for v in (imagined, truth, still))
    model_err = (imagined - truth).pow(2).sum(-1).mean(1)
    still_err = (still - truth).pow(2).sum(-1).mean(1)
    example = {"truth": x[:, 0], "imagined": imagined[:, ::batch][:, :len(starts)], "starts": torch.tensor(starts)}
    return model_err, still_err, example


def run(cfg: PendulumModelConfig, ctx: Context) -> dict:
    rec, dev = ctx.recorder, ctx.device
    x_tr, u_tr, _ = simulate(cfg, cfg.train_episodes, ctx.generator)
    x_te, u_te, state_te = simulate(cfg, cfg.test_episodes, ctx.generator)
    x_tr, u_tr, x_te, u_te = (t.to(dev) for t in (x_tr, u_tr, x_te, u_te))
    validation = None
    if cfg.validation_episodes:
        validation = tuple(t.to(dev) for t in simulate(cfg, cfg.validation_episodes, ctx.generator)[:2])
    model = world_model(cfg, x_tr.shape[-1], ctx.generator).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = None
    if cfg.lr_schedule == "cosine":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * -(-cfg.train_episodes // cfg.batch))
    infer_cfg = InferenceConfig(steps=cfg.inference_steps, lr=cfg.inference_lr, momentum=cfg.inference_momentum)

    best: tuple[float, int, dict] | None = None   # validation error, epoch, parameters
    batches = 0
    bar = ctx.progress(range(cfg.epochs), desc="pendulum-model", unit="epoch")
    for epoch in bar:
        for energy, errors in train_epoch(model, opt, x_tr, u_tr, cfg, infer_cfg, ctx.generator):
            rec.append("cortex/free_energy", energy)
            for node, rms in errors.items():
                rec.append(f"cortex/{node}/error_rms", rms)
            for node in (n.name for n in model.spec.nodes if n.learn_precision):
                k, i = model.slot[node]
                rec.append(f"cortex/{node}/precision", model.log_precision[k][i].exp().mean().item())
            if schedule is not None:
                schedule.step()
            check_finite("free energy F", energy, step=batches, key="lr", where="training batch")
            batches += 1
        model_err, still_err, example = imagination_errors(model, x_te, u_te, cfg, infer_cfg)
        for key, value, units, what in (
            ("epoch", epoch + 1, "epoch", "epochs completed"),
            ("prediction_error_10", model_err[-1].item(), "squared obs units",
             f"held-out MSE of the {cfg.horizon}-step imagined observation"),
            ("nochange_error_10", still_err[-1].item(), "squared obs units",
             f"held-out MSE of predicting no change over {cfg.horizon} steps"),
        ):
            rec.append(f"metrics/{key}", value, units=units, description=what)
        if validation is not None:
            val_err = imagination_errors(model, *validation, cfg, infer_cfg)[0][-1].item()
            rec.append("metrics/validation_error_10", val_err, units="squared obs units",
                       description=f"MSE of the {cfg.horizon}-step imagined observation on the validation episodes")
            if best is None or val_err < best[0]:
                best = (val_err, epoch + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
        bar.set_postfix(err=f"{model_err[-1].item():.3f}", nochange=f"{still_err[-1].item():.3f}")

    selected = {}
    if best is not None:
        model.load_state_dict(best[2])
        model_err, still_err, example = imagination_errors(model, x_te, u_te, cfg, infer_cfg)
        selected = {"selected_epoch": best[1]}

    rec.write("pendulum/prediction_error", model_err.cpu())
    rec.write("pendulum/nochange_error", still_err.cpu())
    rec.write("pendulum/example_truth", example["truth"].cpu())
    rec.write("pendulum/example_imagined", example["imagined"].cpu())
    rec.write("pendulum/example_starts", example["starts"].cpu())
    rec.write("pendulum/example_state", state_te[:, 0].cpu())
    model_final, still_final = model_err[-1].item(), still_err[-1].item()
    return {
        "prediction_error_10": model_final,
        "nochange_error_10": still_final,
        "improvement_10": still_final / model_final,
        **selected,
    }


register(Simulation(
    name="pendulum-model",
    summary="temporal PC world model of a driven pendulum (optionally without velocity), n-step imagination",
    config=PendulumModelConfig,
    run=run,
))
