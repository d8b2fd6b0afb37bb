"""PCX baseline for pc-digits: supervised predictive coding with PCX (JAX) on scikit-learn's 8x8 digits.

A side-by-side reference for brainloop's pc-digits benchmark, written against PCX 0.6.3
(``pip install pcx==0.6.3``; jax / jaxlib CPU build, equinox, optax). It runs in its own venv,
not brainloop's::

    python3 -m venv /work/pcxenv
    /work/pcxenv/bin/pip install pcx==0.6.3 scikit-learn
    /work/pcxenv/bin/python benchmarks/pcx_digits.py --epochs 30 --seed 0 --threads 1

Network (discriminative PC, as in PCX's own tutorials): 64 -> 128 -> 128 -> 128 -> 10.
The standardised image is the clamped input at the top (it is the argument of the forward
pass, not a value node). Each of the three hidden layers is ``h = Vode(tanh(W h_prev + b))``
with squared-error energy; the output node is ``Vode(W h + b)`` (linear, squared-error energy).
During training its value is pinned to the one-hot label (the ``frozen`` attribute keeps it
out of the inference gradient). Testing is one feed-forward pass (``STATUS.INIT``, which
initialises each node to its prediction) and an argmax of the output prediction.

One training step (``train_on_batch``, one ``pcx.functional.jit``-compiled call per batch,
inference steps unrolled inside it as in PCX's examples):
  1. forward initialisation of all nodes (``STATUS.INIT``) and clamping of the label;
  2. ``--inference-steps`` (default 8) gradient steps of SGD (``--h-lr``) on the free hidden
     node values, with the energy summed over the batch;
  3. one weight update with the gradient of the energy wrt the LayerParams, scaled by
     1/batch, through ``optax.adam`` (``--w-lr``).

Data: ``sklearn.datasets.load_digits`` (1797 images), split as brainloop's pc-digits splits it
(scikit-learn's stratified ``train_test_split``, ``random_state=seed``): 360 digits in the test
split and 1437 in training, the same digits on both sides. Features are standardised with the
training split's mean and std; like brainloop's pc-digits the std gets +0.1 so the always-blank
border pixels do not blow up.
PCX nodes have a fixed batch shape, so each epoch (a fresh seeded shuffle) runs
floor(1437 / 64) = 22 full batches of 64 (1408 samples; the 29 left over differ every
epoch). The test split is padded to a multiple of 64 and the padding is masked out of the
accuracy.

Timing: ``seconds_per_epoch`` is the wall clock of the training loop of one epoch (shuffle,
batching, the 22 jitted steps, and a ``block_until_ready`` on the weights at the end, since
JAX dispatches asynchronously). Evaluation is outside it. The first epoch includes the
tracing and XLA compilation of ``train_on_batch`` and is reported separately
(``first_epoch_seconds``). ``seconds_per_epoch_median`` is the median over epochs 2..N.

Threads: ``--threads 1`` sets, before jax is imported,
``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"`` (plus
``JAX_PLATFORMS=cpu``). That makes XLA's CPU kernels single-threaded. The process is not
pinned to a core. For that, run it under ``taskset -c N`` as well. Without
``--threads`` XLA uses its defaults (all cores).

Output: progress lines on stderr, then one JSON line on stdout with
seconds_per_epoch_median, first_epoch_seconds, test_accuracy (last epoch, fraction),
train_samples, epochs, batch_size, inference_steps, pcx_version and jax_version, followed by
the settings used.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="1: single-threaded XLA CPU (set before importing jax); default: XLA's choice")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--inference-steps", type=int, default=8)
    p.add_argument("--h-lr", type=float, default=0.1, help="SGD step size on the node values")
    p.add_argument("--w-lr", type=float, default=1e-3, help="Adam step size on the weights")
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128, 128])
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None

if ARGS is not None and ARGS.threads is not None:
    if ARGS.threads != 1:
        sys.exit("--threads: only 1 is supported (omit it for XLA's default threading)")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# jax and PCX are imported only after XLA_FLAGS is set.
import importlib.metadata  # noqa: E402
from typing import Callable  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import pcx  # noqa: E402
import pcx.functional as pxf  # noqa: E402
import pcx.nn as pxnn  # noqa: E402
import pcx.predictive_coding as pxc  # noqa: E402
import pcx.utils as pxu  # noqa: E402

N_CLASSES = 10


# Model ################################################################################################################

class PCClassifier(pxc.EnergyModule):
    """Input (clamped, not a node) -> [Linear, act, Vode] * hidden -> Linear -> Vode (label)."""

    def __init__(self, sizes: list[int], act: Callable[[jax.Array], jax.Array]) -> None:
        super().__init__()
        self.act = pcx.static(act)
        self.layers = [pxnn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        self.vodes = [pxc.Vode() for _ in sizes[1:-1]] + [pxc.Vode(pxc.se_energy)]
        # Custom attribute read by the inference mask: the output node is not inferred.
        self.vodes[-1].h.frozen = True

    def __call__(self, x: jax.Array, label: jax.Array | None) -> jax.Array:
        h = x
        for layer, node in zip(self.layers[:-1], self.vodes[:-1]):
            h = node(self.act(layer(h)))
        self.vodes[-1](self.layers[-1](h))
        if label is not None:
            self.vodes[-1].set("h", label)
        return self.vodes[-1].get("u")


# Per-sample graphs, batched with PCX's vmap: node values and caches are batched on axis 0,
# the weights are shared.
_BATCHED = pxu.M(pxc.VodeParam | pxc.VodeParam.Cache).to((None, 0))


@pxf.vmap(_BATCHED, in_axes=(0, 0), out_axes=0)
def forward(x, label, *, model: PCClassifier):
    return model(x, label)


@pxf.vmap(_BATCHED, in_axes=(0,), out_axes=(None, 0), axis_name="batch")
def total_energy(x, *, model: PCClassifier):
    pred = model(x, None)
    return jax.lax.psum(model.energy(), "batch"), pred


_INFER_MASK = pxu.M_hasnot(pxc.VodeParam, frozen=True).to([False, True])
_LEARN_MASK = pxu.M(pxnn.LayerParam).to([False, True])


@pxf.jit(static_argnums=0)
def train_on_batch(T: int, x: jax.Array, label: jax.Array, *, model: PCClassifier,
                   optim_w: pxu.Optim, optim_h: pxu.Optim):
    model.train()

    # Forward initialisation; the output node is clamped to the label.
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(x, label, model=model)

    # Inference on the free node values.
    for _ in range(T):
        with pxu.step(model, clear_params=pxc.VodeParam.Cache):
            _, g = pxf.value_and_grad(_INFER_MASK, has_aux=True)(total_energy)(x, model=model)
        optim_h.step(model, g["model"])

    # Local weight update at the inferred state (batch-mean gradient).
    with pxu.step(model, clear_params=pxc.VodeParam.Cache):
        _, g = pxf.value_and_grad(_LEARN_MASK, has_aux=True)(total_energy)(x, model=model)
    optim_w.step(model, g["model"], scale_by=1.0 / x.shape[0])


@pxf.jit()
def predict_batch(x: jax.Array, *, model: PCClassifier):
    model.eval()
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        pred = forward(x, None, model=model)
    return pred.argmax(axis=-1)


# Data #################################################################################################################

def load_split(test_fraction: float, seed: int):
    """The split of brainloop's pc-digits (``sims.pc_digits.load_digits_split``): scikit-learn's
    stratified ``train_test_split`` with ``random_state=seed``, so both projects are scored on
    the same held-out digits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        digits.data.astype(np.float32), digits.target.astype(np.int32), test_size=test_fraction,
        random_state=seed, stratify=digits.target)
    mean, scale = x_tr.mean(0), x_tr.std(0) + 0.1
    standardise = lambda a: ((a - mean) / scale).astype(np.float32)  # noqa: E731
    return standardise(x_tr), y_tr, standardise(x_te), y_te


# Run ##################################################################################################################

def test_accuracy(x_te: np.ndarray, y_te: np.ndarray, batch_size: int, model: PCClassifier) -> float:
    n = len(x_te)
    pad = (-n) % batch_size
    x_pad = np.concatenate([x_te, np.zeros((pad, x_te.shape[1]), np.float32)])
    preds = [np.asarray(predict_batch(x_pad[i:i + batch_size], model=model))
             for i in range(0, len(x_pad), batch_size)]
    return float((np.concatenate(preds)[:n] == y_te).mean())


def main(args: argparse.Namespace) -> dict:
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    bs, T = args.batch_size, args.inference_steps

    x_tr, y_tr, x_te, y_te = load_split(args.test_fraction, args.seed)
    onehot_tr = np.eye(N_CLASSES, dtype=np.float32)[y_tr]
    n_batches = len(x_tr) // bs
    if n_batches == 0:
        raise SystemExit(f"--batch-size {bs} is larger than the {len(x_tr)} training samples")

    pcx.RKG.seed(args.seed)
    model = PCClassifier([x_tr.shape[1], *args.hidden, N_CLASSES], jax.nn.tanh)

    # The node values must exist (with their batch shape) before the optimisers capture them.
    with pxu.step(model, pxc.STATUS.INIT, clear_params=pxc.VodeParam.Cache):
        forward(jnp.zeros((bs, x_tr.shape[1])), None, model=model)
        optim_h = pxu.Optim(lambda: optax.sgd(args.h_lr), pxu.M_hasnot(pxc.VodeParam, frozen=True)(model))
        optim_w = pxu.Optim(lambda: optax.adam(args.w_lr), pxu.M(pxnn.LayerParam)(model))

    shuffle_rng = np.random.default_rng(args.seed + 1)
    epoch_seconds, accuracies = [], []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        order = shuffle_rng.permutation(len(x_tr))[: n_batches * bs].reshape(n_batches, bs)
        for idx in order:
            train_on_batch(T, x_tr[idx], onehot_tr[idx], model=model, optim_w=optim_w, optim_h=optim_h)
        jax.block_until_ready([l.nn.weight.get() for l in model.layers])
        epoch_seconds.append(time.perf_counter() - t0)

        accuracies.append(test_accuracy(x_te, y_te, bs, model))
        log(f"epoch {epoch + 1:3d}  train {epoch_seconds[-1]:.3f} s  test acc {accuracies[-1]:.4f}")

    rest = epoch_seconds[1:]
    return {
        "seconds_per_epoch_median": statistics.median(rest) if rest else None,
        "first_epoch_seconds": epoch_seconds[0],
        "test_accuracy": accuracies[-1],
        "train_samples": int(len(x_tr)),
        "epochs": args.epochs,
        "batch_size": bs,
        "inference_steps": T,
        "pcx_version": importlib.metadata.version("pcx"),
        "jax_version": jax.__version__,
        # settings, for the record
        "train_samples_per_epoch": int(n_batches * bs),
        "test_samples": int(len(x_te)),
        "best_test_accuracy": max(accuracies),
        "sizes": [x_tr.shape[1], *args.hidden, N_CLASSES],
        "activation": "tanh",
        "h_optimizer": f"sgd(lr={args.h_lr})",
        "w_optimizer": f"adam(lr={args.w_lr})",
        "seed": args.seed,
        "threads": args.threads,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


if __name__ == "__main__":
    print(json.dumps(main(ARGS)), flush=True)
