"""`continual` and `small-batch`: two claims of the source text, tested — PC against backprop.

The source text motivates predictive coding by two findings: it "alleviates catastrophic
interference to some degree" (Song et al. 2024, prospective configuration) and does better "at
small batch sizes" (Alonso et al. 2022). Both simulations train a supervised PC network (the
pc-digits set-up: image → hidden columns → label, local rule after `inference_steps` iterations)
and a backprop MLP of the same shape from the same initial weights, on scikit-learn's digits.

Splits: stratified by the run's seed into train / validation / test (`test_fraction`, then
`val_fraction` of the rest); the indices are recorded. Each network's learning rate is chosen
from `lrs` by the same sweep — the whole training protocol from the same initial weights,
scored on the validation split — and only then is the test split evaluated.

`continual`: tasks are disjoint sets of digits (`tasks`: split2 = 0–4 then 5–9; pairs5 = five
pairs), trained one after the other for `epochs_per_task` epochs each through one 10-way output.
`scenario` class_il: every output is trained and the test takes the argmax over all ten digits;
task_il: only the current task's outputs learn (the others' targets are the network's own
predictions: for backprop exactly a masked loss) and the test takes the argmax over the task's
digits, the task being known. After every epoch both networks are tested on every task of the
validation and the test split; each swept learning rate is trained once and the one with the
best mean validation accuracy at the end is kept. Recorded: `continual/{pc,bp}/accuracy`
(epoch, task) on the test split, `continual/epoch_task`, the splits and the selection.
Summary: `{pc,bp}_final_accuracy` (mean over tasks after the last epoch), `{pc,bp}_forgetting`
(mean over all tasks but the last of the drop from the best accuracy reached since the task's
training began to the final one), `{pc,bp}_lr` and `{pc,bp}_lr_at_grid_edge` (1 when the
chosen rate is the smallest or largest swept: the sweep may not have found the optimum).

`small-batch`: `shots` examples per digit from the training split, trained at each batch size of
`batch_sizes` for the same number of examples seen (`examples`); test error after it. The
learning rate is chosen per batch size with the largest shot count. A pass over fewer examples
than the batch size trains on all of them (5 per digit at batch 64 is batch 50). Recorded:
`small_batch/{pc,bp}/test_error` (shots, batch size), `small_batch/lr/{pc,bp}` and the
selection; summary `{pc,bp}_test_error` (mean over the grid) and `{pc,bp}_test_error_smallest`
(the smallest batch and shot count).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from cortex import InferenceConfig, InferenceDivergedError, PCModel, chain, infer
from cortex.activations import ACTIVATIONS
from cortex.learning import learn_step
from cortex.params import param, validate
from sims.pc_digits import backprop_twin, standardiser
from sims.registry import Simulation, register

TASKS = {"split2": ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)),
         "pairs5": ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))}
NETS = ("pc", "bp")


@dataclass(frozen=True)
class Networks:
    """The two networks' shape and PC's inference (shared by both simulations)."""

    hidden: tuple[int, ...] = param((64, 64), "widths of the hidden columns / layers", ge=1)
    activation: str = param("tanh", "f of the hidden columns", choices=ACTIVATIONS)
    inference_steps: int = param(8, "PC inference iterations per training batch", ge=1)
    inference_lr: float = param(0.1, "PC inference step size on z", gt=0)
    lrs: tuple[float, ...] = param((1e-4, 3e-4, 1e-3, 3e-3), "Adam step sizes swept on the "
                                   "validation split, for each network", gt=0)
    test_fraction: float = param(0.2, "held-out test share of the 1797 digits", gt=0, lt=1)
    val_fraction: float = param(0.2, "validation share of the rest", gt=0, lt=1)

    def __post_init__(self) -> None:
        validate(self)
        if not self.hidden or not self.lrs:
            raise ValueError("config keys 'hidden' and 'lrs' need at least one value")


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 8×8 digits: X (n, 64) float32, y (n,) int64."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float32), data.target.astype(np.int64)


def split_indices(y: np.ndarray, seed: int, test_fraction: float, val_fraction: float):
    """Stratified (train, validation, test) index arrays, disjoint, covering every sample."""
    from sklearn.model_selection import train_test_split

    rest, test = train_test_split(np.arange(len(y)), test_size=test_fraction,
                                  random_state=seed, stratify=y)
    train, val = train_test_split(rest, test_size=val_fraction, random_state=seed + 1,
                                  stratify=y[rest])
    return np.sort(train), np.sort(val), np.sort(test)


class Data:
    """The split digits, standardised by the training split's statistics, as tensors."""

    def __init__(self, cfg: Networks, seed: int):
        x, y = digits()
        self.train, self.val, self.test = split_indices(y, seed, cfg.test_fraction,
                                                        cfg.val_fraction)
        self.x = torch.from_numpy(standardiser(x[self.train])(x))
        self.y = torch.from_numpy(y)

    def part(self, index) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]


class Net:
    """One network (PC or its backprop twin) with its optimiser: `step(x, y)`, `scores(x)`.

    A network whose PC inference or backprop loss diverges stops learning and scores nothing
    (`scores` returns None), so a diverged network counts as wrong on every example.
    """

    def __init__(self, kind: str, cfg: Networks, lr: float, seed: int):
        dims = {"image": 64, **{f"h{i + 1}": h for i, h in enumerate(cfg.hidden)}, "label": 10}
        # the same seed gives both networks the same initial weights
        self.pc = PCModel(chain(dims, top_kind="input", activation=cfg.activation),
                          generator=torch.Generator().manual_seed(seed))
        self.kind, self.diverged = kind, False
        self.bp = backprop_twin(self.pc, list(dims)) if kind == "bp" else None
        params = (self.pc if kind == "pc" else self.bp).parameters()
        self.optimizer = torch.optim.Adam(params, lr=lr)
        self.train_cfg = InferenceConfig(steps=cfg.inference_steps, lr=cfg.inference_lr)

    def step(self, x: Tensor, y: Tensor, digits_=None) -> None:
        """One learning step on (x, y). With `digits_` (task-incremental training) only those
        outputs learn: the others' targets are the network's own predictions, so their error
        starts at zero (for backprop this masks the loss exactly)."""
        if self.diverged:
            return
        target = nn.functional.one_hot(y, 10).float()
        if digits_ is not None:
            others = torch.ones(10, dtype=torch.bool)
            others[list(digits_)] = False
            target[:, others] = self._forward(x)[:, others]
        if self.kind == "pc":
            try:
                learn_step(self.pc, self.optimizer, {"image": x, "label": target}, self.train_cfg)
            except InferenceDivergedError:
                self.diverged = True
            return
        loss = 0.5 * ((self.bp(x) - target) ** 2).sum(1).mean()
        if not torch.isfinite(loss):
            self.diverged = True
            return
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    @torch.no_grad()
    def _forward(self, x: Tensor) -> Tensor:
        if self.kind == "pc":
            return infer(self.pc, {"image": x}, InferenceConfig(steps=0))["label"]
        return self.bp(x)

    def scores(self, x: Tensor) -> Tensor | None:
        """Output scores (n, 10), or None when the network has diverged."""
        if self.diverged:
            return None
        scores = self._forward(x)
        if not torch.isfinite(scores).all():
            self.diverged = True
            return None
        return scores


def task_accuracy(scores: Tensor | None, y: Tensor, tasks, task_il: bool) -> np.ndarray:
    """Accuracy on each task's digits (n_tasks,): argmax over all ten outputs
    (class-incremental) or over the task's own digits (task-incremental)."""
    out = np.zeros(len(tasks))
    if scores is None:
        return out
    for t, digits_ in enumerate(tasks):
        mine = torch.isin(y, torch.tensor(digits_))
        s, labels = scores[mine], y[mine]
        if task_il:
            allowed = torch.tensor(digits_)
            out[t] = (allowed[s[:, allowed].argmax(1)] == labels).float().mean().item()
        else:
            out[t] = (s.argmax(1) == labels).float().mean().item()
    return out


def train_tasks(net: Net, data: Data, tasks, epochs: int, batch: int, seed: int,
                task_il: bool) -> np.ndarray:
    """Train on the tasks in turn; after every epoch the accuracy on every task of the
    validation and the test split, (epochs · n_tasks, 2, n_tasks)."""
    gen = torch.Generator().manual_seed(seed)
    splits = [data.part(data.val), data.part(data.test)]
    history = []
    for digits_ in tasks:
        index = data.train[np.isin(data.y[data.train].numpy(), digits_)]
        for _ in range(epochs):
            order = torch.from_numpy(index)[torch.randperm(len(index), generator=gen)]
            for start in range(0, len(order), batch):
                net.step(*data.part(order[start:start + batch]),
                         digits_ if task_il else None)
            history.append([task_accuracy(net.scores(x), y, tasks, task_il) for x, y in splits])
    return np.asarray(history)


def forgetting(accuracy: np.ndarray, epochs_per_task: int) -> float:
    """Mean over all tasks but the last of (best accuracy since its training began − final
    accuracy); accuracy: (epochs, n_tasks)."""
    drops = [accuracy[t * epochs_per_task:, t].max() - accuracy[-1, t]
             for t in range(accuracy.shape[1] - 1)]
    return float(np.mean(drops))


def record_split(rec, root: str, data: Data) -> None:
    for name in ("train", "val", "test"):
        rec.write(f"{root}/split/{name}", getattr(data, name))


@dataclass(frozen=True)
class ContinualConfig:
    tasks: str = param("split2", "split2: digits 0–4 then 5–9; pairs5: five pairs in turn",
                       choices=tuple(TASKS))
    scenario: str = param("class_il", "class_il: one shared 10-way output, every output "
                          "trained, tested by argmax over all digits; task_il: only the task's "
                          "outputs trained and compared (the task known at test)",
                          choices=("class_il", "task_il"))
    epochs_per_task: int = param(10, "epochs on each task before the next", ge=1)
    batch_size: int = param(32, "samples per learning step", ge=1)
    networks: Networks = dataclasses.field(default_factory=Networks, metadata={
        "help": "the two networks and the learning-rate sweep"})

    def __post_init__(self) -> None:
        validate(self)


def run_continual(cfg: ContinualConfig, ctx) -> dict:
    rec, seed, tasks = ctx.recorder, int(ctx.seed), TASKS[cfg.tasks]
    data = Data(cfg.networks, seed)
    record_split(rec, "continual", data)
    task_il, lrs, summary = cfg.scenario == "task_il", cfg.networks.lrs, {}
    with ctx.progress(total=2 * len(lrs), desc="continual", unit="training") as bar:
        for kind in NETS:
            # every swept rate is trained once; it is chosen on the validation split and only
            # the chosen one's test accuracies are kept
            histories = []
            for lr in lrs:
                histories.append(train_tasks(Net(kind, cfg.networks, lr, seed), data, tasks,
                                             cfg.epochs_per_task, cfg.batch_size, seed, task_il))
                bar.update(1)
            selection = np.array([h[-1, 0].mean() for h in histories])
            best = int(np.argmax(selection))
            test = histories[best][:, 1]
            rec.write(f"continual/lr_selection/{kind}", selection)
            rec.write(f"continual/{kind}/accuracy", test.astype(np.float32))
            summary[f"{kind}_final_accuracy"] = float(test[-1].mean())
            summary[f"{kind}_forgetting"] = forgetting(test, cfg.epochs_per_task)
            summary[f"{kind}_lr"] = lrs[best]
            summary[f"{kind}_lr_at_grid_edge"] = int(len(lrs) > 1 and best in (0, len(lrs) - 1))
    rec.write("continual/epoch_task", np.repeat(np.arange(len(tasks)), cfg.epochs_per_task))
    return summary


@dataclass(frozen=True)
class SmallBatchConfig:
    batch_sizes: tuple[int, ...] = param((1, 4, 16, 64), "batch sizes compared", ge=1)
    shots: tuple[int, ...] = param((5, 10, 30, 100), "training examples per digit", ge=1)
    examples: int = param(1000, "examples seen in every training (steps = examples / batch)",
                          ge=1)
    networks: Networks = dataclasses.field(default_factory=Networks, metadata={
        "help": "the two networks and the learning-rate sweep"})

    def __post_init__(self) -> None:
        validate(self)
        for key in ("batch_sizes", "shots"):
            values = getattr(self, key)
            if not values or list(values) != sorted(set(values)):
                raise ValueError(f"config key {key!r}: give distinct values in increasing "
                                 f"order, got {values}")


def few_shot(data: Data, shots: int, seed: int) -> np.ndarray:
    """`shots` training indices per digit (all of a digit's when it has fewer); the sets of
    one seed are nested (the 5 are among the 10), which lowers the comparison's variance."""
    rng = np.random.default_rng(seed)
    y = data.y[data.train].numpy()
    return np.sort(np.concatenate([rng.permutation(data.train[y == d])[:shots]
                                   for d in range(10)]))


def train_examples(net: Net, data: Data, index: np.ndarray, batch: int, examples: int,
                   seed: int) -> None:
    """Train on `index` in shuffled passes until `examples` examples have been seen."""
    gen = torch.Generator().manual_seed(seed)
    seen = 0
    while seen < examples:
        order = torch.from_numpy(index)[torch.randperm(len(index), generator=gen)]
        for start in range(0, len(order), batch):
            take = order[start:start + min(batch, examples - seen)]
            net.step(*data.part(take))
            seen += len(take)
            if seen >= examples:
                return


def error(net: Net, data: Data, index: np.ndarray) -> float:
    """Test error on `index` (1 for a diverged network)."""
    x, y = data.part(index)
    scores = net.scores(x)
    return 1.0 if scores is None else 1.0 - (scores.argmax(1) == y).float().mean().item()


def run_small_batch(cfg: SmallBatchConfig, ctx) -> dict:
    rec, seed, nets = ctx.recorder, int(ctx.seed), cfg.networks
    data = Data(nets, seed)
    record_split(rec, "small_batch", data)
    shots = [few_shot(data, k, seed) for k in cfg.shots]
    summary = {}
    grid = len(cfg.batch_sizes) * (len(nets.lrs) + len(cfg.shots))
    with ctx.progress(total=2 * grid, desc="small-batch", unit="training") as bar:
        for kind in NETS:
            selection = np.zeros((len(cfg.batch_sizes), len(nets.lrs)))
            chosen = np.zeros(len(cfg.batch_sizes))
            test = np.zeros((len(cfg.shots), len(cfg.batch_sizes)))
            for b, batch in enumerate(cfg.batch_sizes):
                for j, lr in enumerate(nets.lrs):  # the sweep: most shots, validation split
                    net = Net(kind, nets, lr, seed)
                    train_examples(net, data, shots[-1], batch, cfg.examples, seed)
                    selection[b, j] = error(net, data, data.val)
                    bar.update(1)
                chosen[b] = nets.lrs[int(np.argmin(selection[b]))]
                lr = chosen[b]
                for k, index in enumerate(shots):
                    net = Net(kind, nets, lr, seed)
                    train_examples(net, data, index, batch, cfg.examples, seed)
                    test[k, b] = error(net, data, data.test)
                    bar.update(1)
            rec.write(f"small_batch/lr_selection/{kind}", selection.astype(np.float32))
            rec.write(f"small_batch/lr/{kind}", chosen)
            rec.write(f"small_batch/{kind}/test_error", test.astype(np.float32))
            summary[f"{kind}_test_error"] = float(test.mean())
            summary[f"{kind}_test_error_smallest"] = float(test[0, 0])
    rec.write("small_batch/batch_sizes", np.asarray(cfg.batch_sizes))
    rec.write("small_batch/shots", np.asarray(cfg.shots))
    return summary


register(Simulation(name="continual", summary="PC vs backprop on split digits learned one task "
                    "after another: accuracy per task over time and forgetting",
                    config=ContinualConfig, run=run_continual))
register(Simulation(name="small-batch", summary="PC vs backprop at batch sizes 1-64 and 5-100 "
                    "examples per digit: test error after the same examples seen",
                    config=SmallBatchConfig, run=run_small_batch))
