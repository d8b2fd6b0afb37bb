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
(``selected_epoch``), while ``metrics/`` keeps every epoch's test figures.

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
from dataclasses import dataclass, field

import networkx as nx
import torch
from torch import Tensor

from cortex import InferenceConfig, PCModel, rollout, run_sequence
from cortex.laplace import expected_free_energy, laplace_filter, learn_sequences_laplace, mean_errors
from sims.registry import Simulation, register
from sims.runner import Context


@dataclass(frozen=True)
class PendulumModelConfig:
    partial: bool = field(default=False, metadata={"help": "observe (cos, sin) only: the velocity must be inferred"})
    hidden: tuple[int, ...] = field(default=(32,), metadata={
        "help": "widths of the hidden temporal columns, top first; each predicts the next, the last "
                "predicts x"})
    activation: str = field(default="tanh", metadata={"help": "f of the hidden column"})
    posterior: str = field(default="point", metadata={
        "help": "point: the point-mass posterior with the local rule (DESIGN.md section 3); laplace: a "
                "Gaussian posterior (extended Kalman filter), learned by EM with the smoother and "
                "closed-form precisions (cortex.laplace; one hidden column, window 1)"})
    obs_precision: float = field(default=1.0, metadata={"help": "precision of the observation column x (1/variance)"})
    state_precision: float = field(default=1.0, metadata={
        "help": "initial precision of the hidden column (1/variance of its transition noise)"})
    precision_rate: float = field(default=0.05, metadata={
        "help": "laplace: share of the way each batch moves the precisions to their closed-form M-step"})
    min_variance: float = field(default=1e-5, metadata={
        "help": "laplace: floor of every learned variance 1/precision"})
    grad_clip: float = field(default=0.0, metadata={
        "help": "laplace: rescale each EM step's weight gradient to at most this norm (0 = off)"})
    lr_schedule: str = field(default="constant", metadata={
        "help": "constant, or cosine: the step size falls to 0 over the run along a half cosine"})
    dropout: float = field(default=0.0, metadata={
        "help": "share of training steps whose observation is withheld (the model must bridge the "
                "gap with its own prior, which teaches multi-step consistency)"})
    window: int = field(default=1, metadata={"help": "steps re-inferred together (1 = filtering)"})
    epochs: int = field(default=8, metadata={"help": "passes over the training episodes"})
    train_episodes: int = field(default=512, metadata={"help": "training episodes"})
    test_episodes: int = field(default=64, metadata={"help": "held-out episodes"})
    episode_steps: int = field(default=60, metadata={"help": "time steps per episode"})
    batch: int = field(default=32, metadata={"help": "episodes per learning batch"})
    lr: float = field(default=1e-3, metadata={"help": "Adam step size on theta (one step per time step)"})
    weight_decay: float = field(default=0.0, metadata={
        "help": "decoupled weight decay on every parameter (AdamW): bounds the readout's growth, but "
                "also shrinks U; see benchmarks/RESULTS.md"})
    inference_steps: int = field(default=20, metadata={"help": "inference iterations per time step"})
    inference_lr: float = field(default=0.1, metadata={"help": "inference step size"})
    inference_momentum: float = field(default=0.0, metadata={
        "help": "heavy-ball momentum of inference (a window of W steps needs more iterations to "
                "converge than one step: momentum gets there in fewer)"})
    validation_episodes: int = field(default=0, metadata={
        "help": "0: report the model of the last epoch; n: also simulate n validation episodes and report "
                "(on the held-out test episodes) the model of the epoch with the lowest validation error"})
    horizon: int = field(default=10, metadata={"help": "imagination horizon n of the headline error"})
    warmup: int = field(default=20, metadata={"help": "filtering steps before the first imagined start point"})
    dt: float = field(default=0.05, metadata={"help": "time step (s)"})
    damping: float = field(default=0.2, metadata={"help": "viscous damping (1/s)"})
    max_torque: float = field(default=2.0, metadata={"help": "torques are uniform in +-max_torque"})
    hold: int = field(default=5, metadata={"help": "steps each random torque is held"})


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


def hidden_names(cfg: PendulumModelConfig) -> list[str]:
    """``s`` for the column that predicts x, ``s2``, ``s3``, ... above it."""
    return [f"s{len(cfg.hidden) - i}" if i < len(cfg.hidden) - 1 else "s" for i in range(len(cfg.hidden))]


def world_model(cfg: PendulumModelConfig, obs_dim: int, gen: torch.Generator) -> PCModel:
    g = nx.DiGraph()
    names = hidden_names(cfg)
    learn = cfg.posterior == "laplace"
    for name, width in zip(names, cfg.hidden):
        g.add_node(name, dim=width, activation=cfg.activation, precision=cfg.state_precision, learn_precision=learn)
    g.add_node("x", dim=obs_dim, kind="observed", precision=cfg.obs_precision, learn_precision=learn)
    chain = names + ["x"]
    g.add_edges_from(zip(chain[:-1], chain[1:]))
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
        return {hidden_names(cfg)[0]: laplace_filter(model, {"x": x}, u).mean.to(model.dtype)}
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
    state = model.to_grouped({n: torch.cat([z[n][t] for t in starts]) for n in hidden_names(cfg)},
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
    if not cfg.hidden or min(cfg.hidden) < 1:
        raise ValueError(f"hidden must be positive widths, got {cfg.hidden}")
    for key in ("window", "epochs", "train_episodes", "test_episodes", "batch", "horizon", "hold"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"{key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {cfg.weight_decay}")
    if not 0 <= cfg.dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.validation_episodes < 0:
        raise ValueError(f"validation_episodes must be >= 0, got {cfg.validation_episodes}")
    for key in ("obs_precision", "state_precision", "min_variance"):
        if not getattr(cfg, key) > 0:
            raise ValueError(f"{key} must be > 0, got {getattr(cfg, key)}")
    if cfg.grad_clip < 0 or (cfg.grad_clip and cfg.posterior != "laplace"):
        raise ValueError(f"grad_clip must be >= 0 and applies to posterior='laplace' only, got {cfg.grad_clip}")
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {cfg.lr_schedule!r}")
    if cfg.posterior not in ("point", "laplace"):
        raise ValueError(f"posterior must be 'point' or 'laplace', got {cfg.posterior!r}")
    if cfg.posterior == "laplace":
        for key, ok, want in (("hidden", len(cfg.hidden) == 1, "one hidden column"),
                              ("window", cfg.window == 1, "window=1 (the filter; learning smooths whole episodes)"),
                              ("dropout", cfg.dropout == 0, "dropout=0")):
            if not ok:
                raise ValueError(f"posterior='laplace' needs {want}; got {key}={getattr(cfg, key)}")
    if cfg.warmup + cfg.horizon >= cfg.episode_steps:
        raise ValueError(f"episode_steps={cfg.episode_steps} must exceed warmup + horizon = {cfg.warmup + cfg.horizon}")
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
    bar = ctx.progress(range(cfg.epochs), desc="pendulum-model", unit="epoch")
    for epoch in bar:
        for energy, errors in train_epoch(model, opt, x_tr, u_tr, cfg, infer_cfg, ctx.generator):
            rec.append("cortex/free_energy", energy, units="nats",
                       description="free energy per time step (expected under q for the Laplace posterior), "
                                   "mean over a training batch of episodes")
            for node, rms in errors.items():
                rec.append(f"cortex/{node}/error", rms, units="a.u.",
                           description=f"RMS prediction error of column {node} over a training batch")
            for node in (n.name for n in model.spec.nodes if n.learn_precision):
                k, i = model.slot[node]
                rec.append(f"cortex/{node}/precision", model.log_precision[k][i].exp().mean().item(),
                           units="1/a.u.^2", description=f"mean learned precision of column {node} after the batch")
            if schedule is not None:
                schedule.step()
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

    rec.write("pendulum/prediction_error", model_err.cpu(), units="squared obs units",
              description="held-out MSE of the imagined observation k = 1..horizon steps ahead")
    rec.write("pendulum/nochange_error", still_err.cpu(), units="squared obs units",
              description="held-out MSE of predicting no change, k = 1..horizon steps ahead")
    rec.write("pendulum/example_truth", example["truth"].cpu(), units="obs units",
              description="observations of held-out episode 0, (T, d)")
    rec.write("pendulum/example_imagined", example["imagined"].cpu(), units="obs units",
              description="imagined observations of episode 0 from each start point, (horizon, starts, d)")
    rec.write("pendulum/example_starts", example["starts"].cpu(), units="time step",
              description="start point t of each imagined trajectory (it predicts t+1 .. t+horizon)")
    rec.write("pendulum/example_state", state_te[:, 0].cpu(), units="rad, rad/s",
              description="true angle and velocity of held-out episode 0, (T, 2)")
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
