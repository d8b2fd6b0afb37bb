"""The `brainloop` command line (also `python -m sims`): list, show, run, sweep and report
simulations, and turn recorded signals into spikes (`spikes`, with brian2).

Mistakes in what the user typed (an unknown simulation or key, a bad value, a missing file, an
existing, locked or unwritable output) print `brainloop: error: <message>` and exit with status 2,
like argparse's own usage errors, and leave an existing `--out` as it was. So do a ValueError or
FileNotFoundError that a simulation raises at its start (before it records anything) and a
numerical divergence (FloatingPointError, at any time: the message says where the partial
recording is). Any other failure inside a running simulation is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from analysis.spiking import ReadoutConfig, SpikeMapping
from sims.config import describe_config
from sims.registry import available, get
from sims.runner import ReadoutError, prepare_run

_USAGE_ERRORS = (ValueError, FileNotFoundError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `brainloop` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except _USAGE_ERRORS as error:
        print(f"brainloop: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brainloop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `brainloop show rl | head`: the reader has what it wanted
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainloop", description="Run and analyse brainloop simulations.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list the simulations")
    listing.set_defaults(command=_list)

    show = commands.add_parser("show", help="show a simulation's config fields")
    show.add_argument("sim", metavar="SIM", help="simulation name (see `brainloop list`)")
    show.set_defaults(command=_show)

    run = commands.add_parser("run", help="run a simulation, recording into an HDF5 file")
    run.add_argument("sim", metavar="SIM", help="simulation name (see `brainloop list`)")
    run.add_argument("--config", metavar="FILE", help="JSON or TOML file of config values")
    run.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="extend", nargs="+",
                     default=[], help="override config values (see `brainloop show SIM`)")
    run.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    run.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--threads", type=int, default=1,
                     help="CPU threads for torch (default: 1, fastest for the small models here)")
    run.add_argument("--out", required=True, metavar="FILE.h5",
                     help="recording to write; an existing file is refused unless --overwrite")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing recording at --out (it stays untouched until the "
                          "run has recorded something)")
    run.set_defaults(command=_run)

    report = commands.add_parser("report", help="summarise a recording and draw its figures "
                                                 "(a directory: continual / small-batch runs "
                                                 "pooled over seeds)")
    report.add_argument("recording", metavar="RUN.h5|DIR")
    report.add_argument("--out-dir", metavar="DIR",
                        help="where to write the PNG figures (default: beside the recording)")
    report.add_argument("--no-figures", action="store_true", help="print the summary only")
    report.set_defaults(command=_report)

    sweep = commands.add_parser(
        "sweep", help="run a simulation over a grid of config values × seeds (local worker "
                      "processes, or a Ray cluster); one recording per run and DIR/index.csv")
    sweep.add_argument("sim", metavar="SIM", help="simulation name (see `brainloop list`)")
    sweep.add_argument("--grid", metavar="KEY=V1,V2", action="append", default=[],
                       help="a config key and its values (repeatable; every combination runs)")
    sweep.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="extend",
                       nargs="+", default=[], help="config values fixed for every run")
    sweep.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds 0..N-1 "
                       "(default: 1)")
    sweep.add_argument("--out", required=True, metavar="DIR", help="directory of the recordings "
                       "and index.csv; finished runs there are skipped")
    sweep.add_argument("--workers", type=int, default=1, help="local worker processes")
    sweep.add_argument("--ray-address", metavar="ADDR",
                       help="run on a Ray cluster (\"local\": start one here; needs the sweep "
                            "extra)")
    sweep.set_defaults(command=_sweep)

    spikes = commands.add_parser(
        "spikes", help="drive spiking populations (brian2) with recorded signals; spikes go into "
                       "the same file under spikes/<population>/")
    spikes.add_argument("recording", metavar="RUN.h5")
    spikes.add_argument("--signal", dest="signals", metavar="DATASET[=NAME]", action="append",
                        required=True, help="a recorded signal (repeatable), e.g. "
                                            "basal_ganglia/dopamine=dopamine")
    for field in dataclasses.fields(SpikeMapping):
        kind = {"model": str, "target": str, "neurons": int}.get(field.name, float)
        spikes.add_argument("--" + field.name.replace("_", "-"), type=kind, default=field.default,
                            choices=field.metadata["choices"],
                            help=f"{field.metadata['help']} (default: {field.default})")
    spikes.add_argument("--at", metavar="DATASET",
                        help="step index of an update-level signal (default: found by name)")
    spikes.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    spikes.set_defaults(command=_spikes)
    return parser


def _sweep(args) -> int:
    from sims.sweep import parse_grid, sweep

    if args.seeds < 1 or args.workers < 1:
        raise ValueError("--seeds and --workers must be at least 1")
    results = sweep(args.sim, parse_grid(args.grid), range(args.seeds), args.out,
                    fixed=args.overrides, workers=args.workers, ray_address=args.ray_address,
                    progress=lambda r: print(f"{r.status}: {r.run.out.name}"
                                             + (f" ({r.error})" if r.error else ""),
                                             file=sys.stderr))
    failed = [r for r in results if r.status == "failed"]
    print(f"{len(results) - len(failed)} of {len(results)} runs recorded in {args.out} "
          f"(index.csv){'; failed: ' + ', '.join(r.run.out.name for r in failed) if failed else ''}")
    return 1 if failed else 0


def _spikes(args) -> int:
    from analysis.spiking import add_spikes

    mapping = SpikeMapping(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SpikeMapping)})
    try:
        results = add_spikes(args.recording, args.signals, mapping, seed=args.seed,
                             step_index=args.at,
                             progress=lambda pop: print(f"simulated {pop}", file=sys.stderr))
    except ImportError as error:
        print(f"brainloop: error: {error}", file=sys.stderr)
        return 2
    print(f"added to {args.recording}")
    for population, rho in results.items():
        print(f"  spikes/{population}: rate_correlation = {rho:.4f}")
    return 0


def _list(args) -> int:
    sims = available()
    width = max((len(sim.name) for sim in sims), default=0)
    for sim in sims:
        print(f"{sim.name:<{width}}  {sim.summary}")
    return 0


def _show(args) -> int:
    sim = get(args.sim)
    print(f"{sim.name}: {sim.summary}\n\nconfig ({sim.config.__name__}):")
    print(describe_config(sim.config))
    print("\nreadout (any simulation; keys readout.*, e.g. readout.mapping.gain=30): spikes "
          "added after the run")
    print(describe_config(ReadoutConfig))
    return 0


def _run(args) -> int:
    prepared = prepare_run(args.sim, out=args.out, config_path=args.config,
                           overrides=args.overrides, seed=args.seed, device=args.device,
                           quiet=args.quiet, threads=args.threads, overwrite=args.overwrite)
    try:
        figures = prepared.execute()
    except ReadoutError as error:
        print(f"brainloop: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:
        kept = (f"what was recorded until then is in {args.out}" if prepared.started
                else f"nothing was recorded; {args.out} was left as it was")
        print(f"brainloop: error: simulation {args.sim!r} stopped: {error}\n  {kept}",
              file=sys.stderr)
        return 2
    except _USAGE_ERRORS as error:
        if not prepared.started:  # the simulation refused its input before recording anything
            raise
        # A bug, not a usage error: wrapped so that `main` keeps its traceback.
        raise RuntimeError(f"simulation {args.sim!r} failed") from error
    print(f"wrote {args.out}")
    if prepared.readout.signals:
        print(f"added spikes of {', '.join(prepared.readout.signals)} (readout)")
    width = max((len(name) for name in figures), default=0)
    for name, value in figures.items():
        print(f"  {name:<{width}} = {value:.6g}")
    return 0


def _report(args) -> int:
    # Imported here: matplotlib is slow to import and only reports need it.
    from analysis.report import summarize, write_figures

    if Path(args.recording).is_dir():  # a sweep or several seeds: pooled tables and figures
        from analysis.report import report_directory

        text, written = report_directory(args.recording)
        print(text or f"no sweep index or continual / small-batch recordings in "
                      f"{args.recording}")
        for path in written:
            print(f"wrote {path}")
        return 0
    print(summarize(args.recording))
    if not args.no_figures:
        for path in write_figures(args.recording, args.out_dir):
            print(f"wrote {path}")
    return 0
