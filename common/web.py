"""`python -m common.web`: the web service (common/ops/web.py)."""

from common.ops.web import main

if __name__ == "__main__":
    main()
