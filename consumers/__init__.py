"""Consumers: `python -m consumers --partition K --of N`, or the odd/even presets."""

from common.cli import CONSUMER_OPTIONS, make_command
from common.process.wiring import run_consumer


def command(index: int | None = None, of: int | None = None):
    return make_command("consumer", run_consumer, CONSUMER_OPTIONS, index, of)
