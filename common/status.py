"""`python -m common.status`: the status command (common/ops/status.py)."""

from common.ops.status import main

if __name__ == "__main__":
    main()
