"""`python -m common.webhooks`: the lean webhook receiver (common/ops/webhook_server.py)."""

from common.ops.webhook_server import main

if __name__ == "__main__":
    main()
