"""The throughput benchmark of issue 4: `python bench/run.py --help`."""

from common.errors import CampaignError


class BenchFailed(CampaignError):
    """A run did not finish, or did not send every row exactly once."""
