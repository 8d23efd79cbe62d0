"""The Redis side: every key name, jobs and their leases, pause, run locks, heartbeats."""
