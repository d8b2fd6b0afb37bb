"""`python -m sims` is the `brainloop` command."""

from sims.cli import main

raise SystemExit(main())
