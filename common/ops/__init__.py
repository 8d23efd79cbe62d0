"""What operators use: the status snapshot and command, the web service and its API document."""
