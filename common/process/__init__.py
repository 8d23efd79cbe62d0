"""The long-running roles: the driver around them, their wiring, the producer and the consumer."""
