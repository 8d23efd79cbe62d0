"""The mock endpoint as a process of the run's own: it fails and hangs some
sends, changes its answers when a fault asks, and at the end says what it
took per idempotency key and per phone. It is never killed."""

import re
import subprocess
import sys
from pathlib import Path

import requests

from common.testing.chaos.config import HANG_SECONDS
from common.testing.processes import SetupFailed, spawn, wait_until


class MockEndpoint:
    """common.mock_whatsapp as a process with injected failures and hangs; never killed."""

    def __init__(self, workdir: Path, fail_rate: float, timeout_rate: float):
        self.log = workdir / "logs" / "mock.log"
        self.argv = [
            sys.executable,
            "-m",
            "common.mock_whatsapp",
            "--port",
            "0",
            "--fail-rate",
            str(fail_rate),
            "--timeout-rate",
            str(timeout_rate),
            "--hang-seconds",
            str(HANG_SECONDS),
        ]
        self.process: subprocess.Popen | None = None
        self.url: str | None = None

    def start(self) -> None:
        process = self.process = spawn(self.argv, self.log)

        def listening() -> bool:
            match = re.search(r"listening on (http://\S+)", self.log.read_text())
            if match:
                self.url = match.group(1)
            elif process.poll() is not None:
                raise SetupFailed(f"the mock endpoint exited; see {self.log}")
            return bool(match)

        wait_until(listening, 20, "the mock endpoint listening", self.log)

    def stats(self) -> dict:
        return requests.get(f"{self.url}/_mock/stats", timeout=30).json()

    def deliveries(self) -> dict[str, int]:
        """Idempotency key -> how many times the mock answered 2xx for it."""
        return requests.get(f"{self.url}/_mock/deliveries", timeout=30).json()

    def recipients(self) -> dict[str, int]:
        """Phone ("to") -> how many times the mock answered 2xx for it."""
        return requests.get(f"{self.url}/_mock/recipients", timeout=30).json()

    def trickled(self) -> dict[str, int]:
        """Idempotency key -> how many of its 2xx answers the mock trickled."""
        return requests.get(f"{self.url}/_mock/trickled", timeout=30).json()

    def configure(self, **changes) -> None:
        requests.post(f"{self.url}/_mock/config", json=changes, timeout=30).raise_for_status()
