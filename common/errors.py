"""Expected failures, each with the exit code the command line turns it into.

Anything not listed here is a bug and keeps its traceback.
"""

EXIT_UNEXPECTED = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
EXIT_LOCKED = 4


class CampaignError(Exception):
    """Base of the failures a user can fix; the CLI prints them as one line."""

    exit_code = EXIT_UNEXPECTED


class ConfigError(CampaignError):
    """Bad settings: a malformed URL, a name that is not an identifier, wrong credentials."""

    exit_code = EXIT_CONFIG


class LockHeld(CampaignError):
    """Another copy of this role and partition holds the run lock (--once, --exclusive)."""

    exit_code = EXIT_LOCKED


class ServiceUnavailable(CampaignError):
    """MySQL, Redis or the endpoint cannot be reached; retrying later may work."""

    exit_code = EXIT_UNAVAILABLE
