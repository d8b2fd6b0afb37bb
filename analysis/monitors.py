"""The monitor table: every dataset name a simulation records and its meaning (DESIGN.md §7, §9).

One entry per name pattern, so that a name means one thing in every simulation: what a row is
and the axes after it (`shape`, documentation only: `(step, env, d_node)` is one row per time
step, each row `(env, d_node)`), its `units` and a `description`. A `{placeholder}` stands for
one path part (`cortex/{node}/z` matches `cortex/h1/z`) and is filled into the description.
Entries with `static=True` are arrays written once (`Recorder.write`); the others are series
appended row by row (`Recorder.append`). Entries with `units=None, description=None` (the
`metrics/{name}` learning curves) are documented by the simulation that records them: it passes
`units=` and `description=`. The `Recorder` refuses every name that no entry matches.

To record something new, add an entry here: one line per field, placed beside its group.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import cache

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Monitor:
    """One entry of the table.

    Attributes:
        pattern: the dataset name, with `{placeholder}` parts (`cortex/{node}/z`).
        shape: what a row is, then the axes of each row: `(step, env, d_node)`; for a static
            array its whole shape, `(episode,)`. `[, K]` marks an optional axis.
        units: physical units of the values; None when the simulation supplies them.
        description: what the values are; may use the placeholders; None when the simulation
            supplies it.
        static: written once with `Recorder.write` instead of appended row by row.
    """

    pattern: str
    shape: str
    units: str | None
    description: str | None
    static: bool = False

    @property
    def caller_documented(self) -> bool:
        """True when the recording simulation passes `units=` and `description=` itself."""
        return self.units is None and self.description is None


# Families documented by the caller explain themselves here, for `brainloop`'s readers.
_CALLER_DOCUMENTED = {
    "metrics/{name}": "a learning curve (accuracy, loss, error...) evaluated once per epoch or "
                      "evaluation; the simulation documents each with units= and description=",
}

MONITORS: tuple[Monitor, ...] = (
    # The environment's side of each closed-loop step (one column per parallel environment).
    Monitor("env/obs", "(step, env, d_x)", "obs units",
            "observation x_t the action a_t was taken in"),
    Monitor("env/action", "(step, env[, d_a])", "action units",
            "action a_t taken at step t (an index for a discrete action space)"),
    Monitor("env/reward", "(step, env[, K])", "reward",
            "reward r_t for the action taken at step t (a last axis of K reward bases when a "
            "vector)"),
    Monitor("env/terminated", "(step, env)", "flag (int8)",
            "1 when step t ended the episode in a terminal state"),
    Monitor("env/truncated", "(step, env)", "flag (int8)",
            "1 when step t ended the episode by a time limit"),

    # The basal ganglia: values and dopamine, always per environment step, one column per env.
    Monitor("basal_ganglia/value", "(step, env)", "reward",
            "ventral striatum value V̂(z_t) of the state at step t"),
    Monitor("basal_ganglia/q", "(step, env)", "reward",
            "dorsal striatum Q̂(z_t, a_t) of the action taken at step t"),
    Monitor("basal_ganglia/dopamine", "(step, env)", "reward",
            "dopamine δ_t = r_t + γ(1 − terminated_t) V̂(z_{t+1}) − V̂(z_t): the TD error of "
            "the transition taken at step t"),
    Monitor("basal_ganglia/bases/{basis}/value", "(step, env)", "reward",
            "value V̂(z_t) of reward basis {basis}"),
    Monitor("basal_ganglia/bases/{basis}/dopamine", "(step, env)", "reward",
            "TD error δ_t of reward basis {basis}"),
    Monitor("basal_ganglia/alpha", "(step, env, K)", "weight",
            "motivational weights α of the reward bases at step t (the felt reward is "
            "Σ_i α_i r_i)"),
    Monitor("basal_ganglia/action_free_energy/{term}", "(update,)", "nats",
            "batch mean of term {term} of the action free energy (seed Eq. 2; 'total' is their "
            "sum), one row per update"),
    Monitor("basal_ganglia/weights", "(feature,)", "reward per feature unit",
            "learned weight of each input feature of a linear V̂, at the end of the run",
            static=True),

    # Reinforcement-learning bookkeeping: each curve beside the env steps it was taken at.
    Monitor("rl/episode_return", "(episode,)", "reward",
            "undiscounted return of a training episode"),
    Monitor("rl/episode_env_step", "(episode,)", "steps",
            "environment steps taken when the episode ended"),
    Monitor("rl/eval_return", "(evaluation,)", "reward",
            "mean return of the deterministic evaluation episodes"),
    Monitor("rl/eval_env_step", "(evaluation,)", "steps",
            "environment steps taken at the evaluation"),
    Monitor("rl/loss/{name}", "(update,)", "a.u.",
            "training loss {name}, mean over the gradient steps of one update"),
    Monitor("rl/update_env_step", "(update,)", "steps", "environment steps taken at the update"),
    Monitor("rl/final_eval_returns", "(episode,)", "reward",
            "returns of the final deterministic evaluation episodes", static=True),
    Monitor("rl/best_eval_returns", "(episode,)", "reward",
            "returns of the networks kept at the best periodic evaluation (keep_best), on "
            "fresh deterministic episodes", static=True),

    # The cortex: columns (nodes) of the predictive-coding DAG and its free energy.
    Monitor("cortex/{node}/z", "(step, env, d_node)", "a.u.", "state z of column {node}"),
    Monitor("cortex/{node}/error", "(step, env, d_node)", "a.u.",
            "prediction error vector ε of column {node}"),
    Monitor("cortex/{node}/energy", "(step, env)", "nats",
            "free energy ½ εᵀΠε + ½ log|2πΣ| of column {node} at the state perceived at step t"),
    Monitor("cortex/prediction_error", "(step, env)", "squared obs units",
            "the world model's one-step prediction error ‖x_t − x̂_t‖², x̂_t predicted from the "
            "belief at t − 1 and the previous action, summed over observation dimensions"),
    Monitor("cortex/entropy", "(step, env)", "nats",
            "entropy ½ log|2πe Σ_t| of the Gaussian posterior of the hidden column at step t"),
    Monitor("cortex/inference_iterations", "(step, env)", "iterations",
            "inference iterations the point posterior took at step t (fewer than "
            "inference_steps when inference_tol stops it early; amortised initialisation "
            "saves iterations)"),
    Monitor("cortex/world_model/loss/{name}", "(update,)", "a.u.",
            "world-model learning from replay: {name} of one update (prediction_error: mean "
            "squared one-step error of x on the replayed windows before the update; "
            "free_energy: per step)"),
    Monitor("cortex/world_model/env_step", "(update,)", "steps",
            "environment steps taken at the world-model update"),
    Monitor("cortex/imagination/imagined", "(start, horizon, d_x)", "obs units",
            "observations imagined by the world model after filtering a replayed window's "
            "start, under the actions taken", static=True),
    Monitor("cortex/imagination/actual", "(start, horizon, d_x)", "obs units",
            "the observations that actually followed (same windows)", static=True),
    Monitor("hippocampus/size", "(update,)", "transitions",
            "transitions stored in replay at the training phase (against rl/update_env_step)"),
    Monitor("hippocampus/sample_age", "(update,)", "transitions",
            "mean age of the transitions replayed in the training phase: how many were stored "
            "after each"),
    Monitor("cortex/{node}/error_rms", "(step,)", "a.u.",
            "RMS prediction error of column {node} over a batch (one row per training step or "
            "batch)"),
    Monitor("cortex/{node}/precision", "(step,)", "1/a.u.^2",
            "mean learned precision of column {node}"),
    Monitor("cortex/free_energy", "(step,)", "nats",
            "batch-mean free energy F, including its log-normaliser ½ log|2πΣ|"),
    Monitor("cortex/energy", "(step,)", "nats",
            "batch-mean prediction-error energy ½ εᵀΠε (F without its log-normaliser)"),
    Monitor("cortex/free_energy_trace", "(row, iteration)", "nats",
            "batch-mean free energy F (with its log-normaliser) before each inference iteration "
            "and after the last"),
    Monitor("cortex/free_energy_trace_step", "(row,)", "steps",
            "training step of each row of cortex/free_energy_trace"),

    # Learning curves, documented by the simulation.
    Monitor("metrics/{name}", "(epoch or evaluation,)", None, None),

    # conditioning: Pavlovian CS → US trials.
    Monitor("conditioning/trial", "(step,)", "trials", "trial (from 0) of environment step t"),
    Monitor("conditioning/time", "(step,)", "steps",
            "trial time of the state x_t of environment step t (the step leads into trial time "
            "t + 1)"),
    Monitor("conditioning/cs_time", "()", "steps",
            "time step of the conditioned stimulus (CS) within a trial", static=True),
    Monitor("conditioning/us_time", "()", "steps",
            "time step of the unconditioned stimulus (US, reward) within a trial", static=True),
    Monitor("conditioning/omitted", "(trial,)", "flag (int8)", "1 when the trial's US was omitted"),
    Monitor("conditioning/omission_dopamine", "(trial_step,)", "reward",
            "δ_t of each step t (trial time t to t + 1) of a probe trial with the US omitted (no "
            "learning)", static=True),
    Monitor("conditioning/omission_value", "(trial_step,)", "reward",
            "V̂(x_t) at each step t of the omission probe trial (no learning)", static=True),

    # revaluation-salt / revaluation-room: reward bases (rb), scalar TD (td) and the successor
    # representation (sr) through a motivational timeline.
    Monitor("revaluation/alpha/{basis}", "(trial or episode,)", "weight",
            "motivational weight α of reward basis {basis} in each trial or episode",
            static=True),
    Monitor("revaluation/switch", "(switch,)", "trials or episodes",
            "first trial (episode) of each motivational phase after the first", static=True),
    Monitor("revaluation/extinction_from", "()", "trials",
            "first trial without outcomes in the extinction condition", static=True),
    Monitor("revaluation/{condition}/cue", "(trial,)", "index",
            "the cue presented in each trial (index in the config's cues)"),
    Monitor("revaluation/{condition}/{learner}/value/{cue}", "(trial,)", "reward",
            "value of cue {cue} for learner {learner} at the start of the trial (before its "
            "learning; reward bases: Σ α_i V̂_i with the trial's α)"),
    Monitor("revaluation/{condition}/{learner}/p_approach/{cue}", "(trial,)", "probability",
            "probability σ(β V̂) that learner {learner} approaches cue {cue} at the start of "
            "the trial"),
    Monitor("revaluation/{condition}/{learner}/dopamine_cue", "(trial,)", "reward",
            "dopamine δ at cue onset (the inter-trial → cue step) of learner {learner}; reward "
            "bases: Σ α_i δ^i"),
    Monitor("revaluation/{condition}/bases/{basis}/dopamine_cue", "(trial,)", "reward",
            "dopamine δ^i of reward basis {basis} at cue onset (not weighed by α)"),
    Monitor("revaluation/room/{learner}/steps", "(episode,)", "steps",
            "steps learner {learner} took in each episode (max_steps when cut short)"),
    Monitor("revaluation/room/{learner}/goal", "(episode,)", "index",
            "goal (basis index) learner {learner} reached in each episode; −1 when cut short"),
    Monitor("revaluation/room/{learner}/steps_to_goal", "(episode,)", "steps",
            "steps learner {learner} took to the most valued goal in each episode; max_steps "
            "when it reached another goal or none"),
    Monitor("revaluation/room/{learner}/memory", "()", "values",
            "number of values learner {learner} stores", static=True),

    # spikes: populations driven by recorded signals (analysis.spiking, `brainloop spikes`).
    Monitor("spikes/{population}/t", "(spike,)", "s",
            "time of each spike of population {population} (step k of the run starts at k · "
            "step_ms; the group's attributes hold the mapping)"),
    Monitor("spikes/{population}/i", "(spike,)", "index",
            "neuron of each spike of population {population}; neuron i belongs to unit i // "
            "neurons of the driving signal"),
    Monitor("spikes/{population}/rate", "(step, unit)", "Hz",
            "rate that drove population {population}: baseline + gain · signal⁺ − "
            "gain_negative · signal⁻", static=True),

    # continual / small-batch: PC against backprop (sims/continual.py).
    Monitor("continual/split/{part}", "(sample,)", "index",
            "indices into scikit-learn's digits of the {part} split", static=True),
    Monitor("small_batch/split/{part}", "(sample,)", "index",
            "indices into scikit-learn's digits of the {part} split", static=True),
    Monitor("continual/lr_selection/{net}", "(lr,)", "fraction",
            "mean class-incremental validation accuracy at the end, per swept learning rate",
            static=True),
    Monitor("continual/{net}/accuracy", "(epoch, task)", "fraction",
            "test accuracy of {net} on each task after each epoch (the config's scenario)",
            static=True),
    Monitor("continual/epoch_task", "(epoch,)", "index", "the task trained in each epoch",
            static=True),
    Monitor("small_batch/lr_selection/{net}", "(batch size, lr)", "fraction",
            "validation error of {net} per batch size and swept learning rate (most shots)",
            static=True),
    Monitor("small_batch/lr/{net}", "(batch size,)", "step size",
            "learning rate chosen for {net} at each batch size", static=True),
    Monitor("small_batch/{net}/test_error", "(shots, batch size)", "fraction",
            "test error of {net} after the same examples seen, per shots and batch size",
            static=True),
    Monitor("small_batch/{axis}", "(value,)", "count",
            "the {axis} of the small-batch grid", static=True),

    # tracking: temporal PC against the Kalman filter on a noisy moving target.
    Monitor("tracking/true_state", "(step, sequence, 3)", "m, m/s, m/s^2",
            "true hidden state s_t = (position, velocity, acceleration)"),
    Monitor("tracking/observation", "(step, sequence, d_y)", "m, m/s, m/s^2",
            "observation y_t = C s_t + v_t"),
    Monitor("tracking/tpc_estimate", "(step, sequence, 3)", "m, m/s, m/s^2",
            "temporal PC filtered estimate of s_t in physical coordinates (K = config "
            "inference_steps)"),
    Monitor("tracking/kalman_estimate", "(step, sequence, 3)", "m, m/s, m/s^2",
            "Kalman filtered mean E[s_t | y_0..t]"),
    Monitor("tracking/sweep_steps", "(setting,)", "iterations", "K: inference steps per time step"),
    Monitor("tracking/sweep_tpc_mse", "(setting,)", "squared state units",
            "tPC mean squared error over steps, sequences and components at this K"),
    Monitor("tracking/sweep_ratio", "(setting,)", "ratio",
            "tPC MSE / Kalman MSE at this K (same data)"),
    Monitor("tracking/prior_precision", "(3,)", "1/a.u.^2",
            "diagonal prior precision Π_s of column s at the end of the run (config "
            "prior_precision)", static=True),

    # pendulum-model: a temporal PC world model imagining pendulum observations.
    Monitor("pendulum/prediction_error", "(horizon,)", "squared obs units",
            "held-out MSE of the imagined observation k = 1 .. horizon steps ahead", static=True),
    Monitor("pendulum/nochange_error", "(horizon,)", "squared obs units",
            "held-out MSE of predicting no change, k = 1 .. horizon steps ahead", static=True),
    Monitor("pendulum/example_truth", "(step, d_x)", "obs units",
            "observations of held-out episode 0", static=True),
    Monitor("pendulum/example_imagined", "(horizon, start, d_x)", "obs units",
            "imagined observations of held-out episode 0 from each start point", static=True),
    Monitor("pendulum/example_starts", "(start,)", "steps",
            "start point t of each imagined trajectory (it predicts t+1 .. t+horizon)",
            static=True),
    Monitor("pendulum/example_state", "(step, 2)", "rad, rad/s",
            "true angle and velocity of held-out episode 0", static=True),
)


def lookup(name: str) -> Monitor:
    """The table entry for the concrete dataset `name`, its placeholders filled into the texts.

    Raises:
        ValueError: naming the dataset, when no entry matches it (add one to analysis/monitors.py),
            or when two do (a mistake in the table).
    """
    name = name.strip("/")
    matches = [(entry, match) for entry, regex in _compiled() if (match := regex.fullmatch(name))]
    if not matches:
        raise ValueError(f"dataset {name!r} is not in the monitor table: add an entry for it (name "
                         f"pattern, shape, units, description) to analysis/monitors.py")
    if len(matches) > 1:
        raise ValueError(f"dataset {name!r} matches several entries of analysis/monitors.py: "
                         + ", ".join(repr(entry.pattern) for entry, _ in matches))
    entry, match = matches[0]
    if entry.description is None:
        return entry
    parts = match.groupdict()
    filled = _PLACEHOLDER.sub(lambda field: parts.get(field[1], field[0]), entry.description)
    return dataclasses.replace(entry, description=filled)


def about(entry: Monitor) -> str:
    """What the entry records: its description, or the family's for caller-documented entries."""
    return entry.description or _CALLER_DOCUMENTED[entry.pattern]


@cache
def _compiled() -> tuple[tuple[Monitor, re.Pattern], ...]:
    compiled = []
    for entry in MONITORS:
        parts = _PLACEHOLDER.split(entry.pattern)  # literal, name, literal, name, ..., literal
        regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)"
                        for i, part in enumerate(parts))
        compiled.append((entry, re.compile(regex)))
    return tuple(compiled)
