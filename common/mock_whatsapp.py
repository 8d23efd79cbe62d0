"""`python -m common.mock_whatsapp`: the mock WhatsApp gateway (common/testing/mock_gateway.py)."""

from common.testing.mock_gateway import main

if __name__ == "__main__":
    main()
