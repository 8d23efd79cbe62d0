"""What tests, the demo and the benchmark stand on: the mock WhatsApp gateway and its dialects."""
