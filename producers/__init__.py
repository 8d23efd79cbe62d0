"""Producers: `python -m producers --partition K --of N`, or the odd/even presets."""

from common.cli import PRODUCER_OPTIONS, make_command
from common.process.wiring import run_producer


def command(index: int | None = None, of: int | None = None):
    return make_command("producer", run_producer, PRODUCER_OPTIONS, index, of)
