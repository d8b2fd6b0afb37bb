"""Spiking readouts: recorded rate signals turned into spike trains with brian2.

The model's dynamics are rate-based; an electrophysiologist compares spikes. Each chosen signal
of a finished recording (a dataset whose first axis is the environment step, or an update-level
signal placed on that axis by its step index) drives a population, `neurons` per unit of the
signal's trailing axes (a column's error units, environments, reward bases):

    rate = baseline + gain · max(signal, 0) − gain_negative · max(−signal, 0)      [Hz]

so a signed signal such as dopamine bursts above its tonic `baseline` and pauses below it. A
rate below zero after the mapping is an error (lower `gain_negative` or raise `baseline`). Each
recorded step lasts `step_ms` of simulated time; the rate is held over it (a brian2
`TimedArray`), so one `Network.run` covers a whole chunk of `chunk_s` simulated seconds — never
one run per model step (~70 ms of fixed overhead each). Neurons:

- `poisson`: each neuron fires with probability rate · dt per time step (an inhomogeneous
  Poisson process); the population rate estimates the mapped rate.
- `lif`: a leaky integrate-and-fire neuron driven by the mapped rate,
  dv/dt = rate − v / tau (threshold 1, reset 0, refractory period t_ref), started at a random
  v. It fires only while rate · tau > 1, at the LIF f–I rate 1 / (t_ref + tau ln(rate·tau /
  (rate·tau − 1))), which approaches the rate when rate · tau ≫ 1 (at the defaults, tau = 50
  ms, it is silent below 20 Hz: give it a baseline above that to show pauses).

The spikes go into the same HDF5 file under `spikes/<population>/{t, i}` (seconds, neuron
index; neuron i belongs to unit i // neurons), the mapped rate under `spikes/<population>/rate`
(step, unit), and the mapping's parameters with `rate_correlation` (the population rate
recovered from the spikes, per step and unit, against the mapped rate) as attributes of the
group `spikes/<population>`. Every signal is checked before the file is touched; the spikes
stream chunk by chunk into a copy that replaces the file only when complete
(`Recorder.open_existing`), so memory stays bounded and a failure leaves the recording exactly
as it was.

brian2 is an optional dependency (`pip install -e '.[spiking]'`); the numpy code-generation
target works everywhere, the compiled (Cython) one is used by `target="auto"` (the default)
when a compiler is available (its first compile takes 15–50 s; it is cached afterwards).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from analysis.recording import Recorder, Recording
from cortex.params import param, validate

INSTALL = ("spiking readouts need brian2: pip install -e '.[spiking]' (brian2 2.9 on Python 3.11 "
           "needs numpy < 2.4, which the extra installs)")


def import_brian2():
    """brian2, or ImportError saying how to install it."""
    try:
        import brian2
    except ImportError as error:
        raise ImportError(f"{INSTALL} ({error})") from None
    return brian2


@dataclass(frozen=True)
class SpikeMapping:
    """How a signal becomes spikes (see the module docstring)."""

    model: str = param("poisson", "poisson (rate-driven Poisson neurons) or lif (leaky "
                       "integrate-and-fire driven by the rate)", choices=("poisson", "lif"))
    neurons: int = param(50, "neurons per unit of the signal", ge=1)
    baseline: float = param(5.0, "tonic rate in Hz", ge=0)
    gain: float = param(20.0, "Hz per unit of the signal's positive part", ge=0)
    gain_negative: float | None = param(None, "Hz per unit of the negative part (none: the gain)",
                                        ge=0)
    step_ms: float = param(100.0, "simulated ms per recorded step", gt=0)
    dt_ms: float = param(1.0, "brian2 time step in ms (at most step_ms)", gt=0)
    tau_ms: float = param(50.0, "membrane time constant of lif neurons in ms", gt=0)
    refractory_ms: float = param(2.0, "refractory period of lif neurons in ms", ge=0)
    chunk_s: float = param(100.0, "simulated seconds per brian2 run (bounds its memory)", gt=0)
    target: str = param("auto", "brian2 code generation: numpy, cython, or auto (cython when "
                        "a compiler and Cython are available)",
                        choices=("numpy", "cython", "auto"))

    def __post_init__(self) -> None:
        validate(self)
        per_step = self.step_ms / self.dt_ms
        if per_step < 1 or abs(per_step - round(per_step)) > 1e-9:
            raise ValueError(f"config key 'dt_ms' = {self.dt_ms} must divide step_ms = "
                             f"{self.step_ms} (whole brian2 time steps per recorded step)")

    def steps_of(self, t: np.ndarray) -> np.ndarray:
        """The recorded step each spike time t (s) falls in."""
        return spike_steps(t, self.step_ms, self.dt_ms)

    @property
    def negative_gain(self) -> float:
        return self.gain if self.gain_negative is None else self.gain_negative

    def rates(self, signal: np.ndarray, name: str = "signal") -> np.ndarray:
        """The mapped rate in Hz, same shape as `signal`; ValueError where it is negative."""
        rate = (self.baseline + self.gain * np.maximum(signal, 0)
                - self.negative_gain * np.maximum(-signal, 0))
        if not np.all(np.isfinite(rate)):
            raise ValueError(f"signal {name!r} has non-finite values")
        if rate.min() < 0:
            step, unit = np.unravel_index(np.argmin(rate), rate.shape)
            raise ValueError(f"signal {name!r} maps to a negative rate ({rate.min():.3g} Hz at step "
                             f"{step}, unit {unit}; signal {signal[step, unit]:.3g}): raise "
                             f"baseline ({self.baseline}) or lower gain_negative "
                             f"({self.negative_gain})")
        if self.model == "poisson" and rate.max() * self.dt_ms / 1000 > 1:
            raise ValueError(f"signal {name!r} maps to {rate.max():.4g} Hz, more than one spike "
                             f"per dt_ms = {self.dt_ms}: lower the gain or dt_ms")
        return rate


def spike_steps(t: np.ndarray, step_ms: float, dt_ms: float) -> np.ndarray:
    """The recorded step each spike time t (s) falls in, counted in whole brian2 time steps
    (spike times are multiples of dt; dividing seconds would misplace some at step edges)."""
    per_step = int(round(step_ms / dt_ms))
    return np.rint(np.asarray(t) * 1000 / dt_ms).astype(np.int64) // per_step


def step_index_for(rec: Recording, name: str, rows: int, given: str | None = None) -> str | None:
    """The dataset holding the environment step of each row of `name`, for a signal recorded
    per update or per episode; None for a per-step signal (or one that is its own time axis).

    Tried in order: `given`; `<group>/env_step` of each enclosing group; `<group>/<first
    word>_env_step` (rl/eval_return → rl/eval_env_step); rl/update_env_step. Only a dataset
    of the same length counts. A signal as long as the run's steps (`env/reward`) is per step;
    any other signal of a run with steps needs a step index (ValueError).
    """
    names = set(rec.datasets())
    if given is not None:
        if given not in names:
            raise ValueError(f"step index {given!r} is not in {rec.path}")
        if len(rec[given]) != rows:
            raise ValueError(f"step index {given!r} has {len(rec[given])} rows, signal {name!r} "
                             f"has {rows}")
        return given
    if "env/reward" in names and len(rec["env/reward"]) == rows:
        return None
    parts = name.split("/")
    candidates = [f"{'/'.join(parts[:k])}/env_step" for k in range(len(parts) - 1, 0, -1)]
    candidates.append(f"{parts[0]}/{parts[1].split('_')[0]}_env_step" if len(parts) > 1 else "")
    candidates.append("rl/update_env_step")
    for candidate in candidates:
        if candidate in names and candidate != name and len(rec[candidate]) == rows:
            return candidate
    if "env/reward" in names:
        raise ValueError(f"signal {name!r} has {rows} rows, the run {len(rec['env/reward'])} "
                         f"steps, and no step index of {rows} rows was found; name one with "
                         f"--at (readout.at)")
    return None


def load_signal(rec: Recording, name: str, step_index: str | None = None
                ) -> tuple[np.ndarray, str | None]:
    """The signal `name` on the run's step axis, (steps, units) float64, and the step index
    used (None when it was per step already, or when the recording has no step axis and the
    signal is its own). An update-level value recorded at environment step count s (summed
    over the run's parallel environments) holds from row s // n_envs, the first step after
    it, to the next update; before the first update the signal is 0 (the baseline rate)."""
    if name not in rec.datasets():
        raise ValueError(f"no dataset {name!r} in {rec.path}; signals recorded there: "
                         f"{', '.join(n for n in rec.datasets() if not n.startswith('spikes/'))}")
    data = np.asarray(rec[name], dtype=np.float64)
    if data.ndim == 0 or len(data) < 2:
        raise ValueError(f"signal {name!r} of shape {data.shape} is not a series over time (it "
                         f"needs a first axis of at least 2 steps)")
    data = data.reshape(len(data), -1)
    index = step_index_for(rec, name, len(data), step_index)
    if index is None:
        return data, None
    steps = np.asarray(rec[index], dtype=np.int64)
    if "env/reward" in rec.datasets():
        reward = rec["env/reward"]
        total, n_envs = len(reward), (reward.shape[1] if len(reward.shape) > 1 else 1)
    else:
        total, n_envs = int(steps.max()) + 1, 1
    rows = steps // n_envs
    if np.any(np.diff(rows) < 0) or rows.min() < 0:
        raise ValueError(f"step index {index!r} of signal {name!r} is not non-decreasing")
    if rows.max() > total:
        raise ValueError(f"step index {index!r} of signal {name!r} reaches step "
                         f"{int(steps.max())}, past the run's {total * n_envs}")
    held = np.searchsorted(rows, np.arange(total), side="right") - 1
    out = np.zeros((total, data.shape[1]))
    out[held >= 0] = data[held[held >= 0]]
    return out, index


def simulate(rates: np.ndarray, mapping: SpikeMapping, seed: int = 0):
    """Spikes of `mapping.neurons` neurons per unit driven by `rates` (steps, units) in Hz.

    Yields (t seconds (n,), i neuron index (n,)) chunk by chunk of `chunk_s` simulated
    seconds; the same seed gives the same spikes. Sets brian2's code-generation target and
    seeds its random numbers (global state of brian2).
    """
    b2 = import_brian2()
    b2.prefs.codegen.target = mapping.target
    steps, units = rates.shape
    n = units * mapping.neurons
    dt = mapping.dt_ms * b2.ms
    if mapping.model == "poisson":
        group = b2.NeuronGroup(n, "unit : integer (constant)",
                               threshold="rand() < ta(t - t0, unit) * dt", dt=dt, name="population")
    else:
        group = b2.NeuronGroup(
            n, "dv/dt = ta(t - t0, unit) - v / tau : 1 (unless refractory)\n"
               "unit : integer (constant)", threshold="v > 1", reset="v = 0",
            refractory=mapping.refractory_ms * b2.ms, method="euler", dt=dt, name="population")
    group.unit = np.arange(n) // mapping.neurons
    net = b2.Network(group)
    b2.seed(seed)
    if mapping.model == "lif":
        group.v = np.random.default_rng(seed).uniform(0, 1, n)
    per_chunk = max(1, int(round(mapping.chunk_s * 1000 / mapping.step_ms)))
    for start in range(0, steps, per_chunk):
        block = rates[start:start + per_chunk]
        # fixed names keep the generated code the same for every chunk (no recompiling)
        monitor = b2.SpikeMonitor(group, name="spikes")
        net.add(monitor)
        namespace = {"ta": b2.TimedArray(block * b2.Hz, dt=mapping.step_ms * b2.ms,
                                         name="driving_rate"),
                     "t0": start * mapping.step_ms * b2.ms, "tau": mapping.tau_ms * b2.ms}
        net.run(len(block) * mapping.step_ms * b2.ms, namespace=namespace)
        yield np.asarray(monitor.t / b2.second, np.float64), np.asarray(monitor.i, np.int32)
        net.remove(monitor)


def binned_rate(t: np.ndarray, i: np.ndarray, steps: int, units: int, mapping: SpikeMapping
                ) -> np.ndarray:
    """The population rate per step and unit (Hz) recovered from spikes, (steps, units)."""
    counts = np.zeros((steps, units))
    np.add.at(counts, (np.minimum(mapping.steps_of(t), steps - 1), i // mapping.neurons), 1)
    return counts / (mapping.neurons * mapping.step_ms / 1000)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays (nan when either is constant)."""
    a, b = a.ravel(), b.ravel()
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


@dataclass(frozen=True)
class ReadoutConfig:
    """A `readout` section of any simulation's config: spikes added after the run."""

    signals: tuple[str, ...] = param((), "recorded signals that drive spiking populations after "
                                     "the run, DATASET[=NAME] (empty: no readout)")
    at: str = param("", "step index of update-level signals (empty: found by name)")
    mapping: SpikeMapping = dataclasses.field(default_factory=SpikeMapping, metadata={
        "help": "how each signal becomes spikes"})

    def __post_init__(self) -> None:
        validate(self)
        for spec in self.signals:
            parse_signal(spec)
        if self.signals:
            try:
                import_brian2()
            except ImportError as error:
                raise ValueError(f"config key 'readout.signals': {error}") from None


def parse_signal(spec: str) -> tuple[str, str]:
    """"dataset[=population]" → (dataset, population); the default population is the dataset
    name with '/' → '.'."""
    name, _, population = spec.partition("=")
    population = population or name.replace("/", ".")
    if not name or "/" in population:
        raise ValueError(f"signal {spec!r}: write DATASET or DATASET=POPULATION (no '/' in the "
                         f"population name)")
    return name, population


def population_seed(seed: int, k: int) -> int:
    """The seed of the k-th population of a readout: independent streams per population."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def add_spikes(path, signals: Sequence[str], mapping: SpikeMapping = SpikeMapping(), *,
               seed: int = 0, step_index: str | None = None, progress=None) -> dict[str, float]:
    """Drive a population per signal ("dataset[=population]") of the recording at `path` and
    add the spikes to it; returns each population's `rate_correlation`.

    Every signal is loaded, placed on the step axis and mapped (with every check) before the
    file is opened; the spikes then stream chunk by chunk into a copy of the file that replaces
    it only when every population is done (`Recorder.open_existing`), so memory stays bounded
    and a failure leaves the recording as it was. Population k is seeded from (seed, k).
    """
    import_brian2()
    specs = [parse_signal(s) for s in signals]
    if not specs:
        raise ValueError("give at least one signal")
    populations = [p for _, p in specs]
    if len(set(populations)) != len(populations):
        raise ValueError(f"population names {populations} repeat; name them with DATASET=NAME")
    with Recording(path) as rec:
        existing = {n.split("/")[1] for n in rec.datasets() if n.startswith("spikes/")}
        taken = sorted(set(populations) & existing)
        if taken:
            raise ValueError(f"{path} already has spikes for population(s) {taken}")
        loaded = []
        for name, population in specs:
            signal, index = load_signal(rec, name, step_index)
            loaded.append((name, population, index, mapping.rates(signal, name)))
    results = {}
    with Recorder.open_existing(path) as recorder:
        for k, (name, population, index, rates) in enumerate(loaded):
            group, counts = f"spikes/{population}", np.zeros(rates.shape)
            pop_seed = population_seed(seed, k)
            for t, i in simulate(rates, mapping, pop_seed):
                recorder.extend(f"{group}/t", t)
                recorder.extend(f"{group}/i", i)
                counts += binned_rate(t, i, *rates.shape, mapping)
            results[population] = correlation(counts, rates)
            recorder.write(f"{group}/rate", rates.astype(np.float32))
            recorder.annotate(group, signal=name, step_index=index or "", seed=pop_seed,
                              units=int(rates.shape[1]), rate_correlation=results[population],
                              **{key: ("" if value is None else value)
                                 for key, value in dataclasses.asdict(mapping).items()})
            if progress is not None:
                progress(population)
        recorder.summary(**{f"rate_correlation_{p}": r for p, r in results.items()})
    return results
