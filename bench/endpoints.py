"""The endpoint the benchmark sends to: nginx, the asyncio endpoint
(bench/async_endpoint.py) or the project's Python mock.

Each counts every send by its Idempotency-Key, so each run can prove that
every row was sent exactly once: the mocks through GET /_mock/stats, nginx
through a buffered log of the keys (see bench/nginx.conf).
"""

import re
import shutil
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import requests

from bench import BenchFailed
from bench.children import Child, Usage
from common.errors import ConfigError, ServiceUnavailable
from common.testing.services import free_port

NGINX_TEMPLATE = Path(__file__).with_name("nginx.conf")
SEND_PATH = "/test_camp"
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class Deliveries:
    delivered: int
    duplicates: int


def nginx_available() -> bool:
    return shutil.which("nginx") is not None


def choose(kind: str, latency_ms: float) -> str:
    """The endpoint for --endpoint auto: nginx cannot wait per request, so it
    only serves the zero-latency runs, and only where it is installed; the
    asyncio endpoint serves the rest."""
    if kind != "auto":
        return kind
    return "nginx" if latency_ms == 0 and nginx_available() else "async"


def wait_for(predicate, what: str, child: Child) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not predicate():
        if not child.running() or time.monotonic() > deadline:
            problem = "exited at start-up" if not child.running() else f"did not start within {START_TIMEOUT:g} s"
            child.stop()
            raise ServiceUnavailable(f"{what} {problem}: {child.log_tail()}")
        time.sleep(0.05)


class PythonMock:
    """A Python endpoint (common.mock_whatsapp, or bench.async_endpoint) in a
    process of its own, so its CPU is counted apart."""

    def __init__(self, module: str, latency_ms: float, log_dir: Path, env: dict):
        self.name = {"common.mock_whatsapp": "python mock", "bench.async_endpoint": "async"}[module]
        self.child = Child.python_module(
            "endpoint", module, ["--port", "0", "--latency-ms", str(latency_ms)], env, log_dir
        )
        self.base_url = ""
        wait_for(self.read_url, "the mock endpoint", self.child)

    def read_url(self) -> bool:
        match = re.search(r"listening on (http://\S+)", self.child.log_path.read_text())
        if match:
            self.base_url = match.group(1)
        return bool(match)

    @property
    def url(self) -> str:
        return self.base_url + SEND_PATH

    def finish(self) -> tuple[Usage, Deliveries]:
        try:
            stats = requests.get(f"{self.base_url}/_mock/stats", timeout=10).json()
        except requests.RequestException as exc:
            self.child.stop()
            raise BenchFailed(f"the mock endpoint did not give its stats: {exc}") from None
        return self.child.stop(), Deliveries(stats["delivered"], stats["duplicates"])


class Nginx:
    """nginx from bench/nginx.conf, rendered into the run's temp dir."""

    name = "nginx"

    def __init__(self, work_dir: Path, log_dir: Path, env: dict):
        self.work_dir = work_dir / "nginx"
        self.work_dir.mkdir()
        self.port = free_port()
        config = NGINX_TEMPLATE.read_text().replace("@PORT@", str(self.port))
        config = config.replace("@WORKDIR@", str(self.work_dir))
        config_path = self.work_dir / "nginx.conf"
        config_path.write_text(config)
        # SIGQUIT is nginx's graceful stop, which flushes the buffered key log.
        self.child = Child(
            "endpoint",
            [
                "nginx",
                "-p",
                str(self.work_dir),
                "-c",
                str(config_path),
                "-e",
                str(self.work_dir / "error.log"),
                "-g",
                "daemon off;",
            ],
            env,
            log_dir,
            stop_signal=signal.SIGQUIT,
        )
        wait_for(self.accepts, "nginx", self.child)

    def accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{SEND_PATH}"

    def finish(self) -> tuple[Usage, Deliveries]:
        usage = self.child.stop()
        log = self.work_dir / "sends.log"
        keys = Counter(log.read_text().split()) if log.exists() else Counter()
        delivered = sum(keys.values())
        return usage, Deliveries(delivered, delivered - len(keys))


def start(kind: str, latency_ms: float, work_dir: Path, log_dir: Path, env: dict):
    """A running endpoint of `kind` (nginx, async or python)."""
    if kind == "nginx":
        if latency_ms:
            raise ConfigError("nginx answers at once: use --endpoint python for --latency-ms > 0")
        if not nginx_available():
            raise ConfigError("--endpoint nginx, but nginx is not installed (apt-get install nginx-light)")
        return Nginx(work_dir, log_dir, env)
    if kind == "async":
        return PythonMock("bench.async_endpoint", latency_ms, log_dir, env)
    return PythonMock("common.mock_whatsapp", latency_ms, log_dir, env)
