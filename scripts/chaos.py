"""`python -m scripts.chaos`, which scripts/chaos runs: the chaos run. Its
modules are in common/testing/chaos/ (see its __init__ for what the run
proves and how); this file stays so the command keeps its name."""

from common.testing.chaos.cli import main

if __name__ == "__main__":
    main()
