"""Runnable experiments: the simulation registry, configs, the runner and the `brainloop` CLI.
Each simulation module registers itself with `sims.registry.register`."""
