"""HTTP engines: the part of a sender that moves bytes to one URL and back.

A sender builds requests and reads answers; the engine only carries them, so a
faster engine replaces another without touching senders or loops. `requests`
honours proxy settings from the environment (HTTPS_PROXY, NO_PROXY); `urllib3`
talks to the URL directly and costs about half the CPU per request; `aiohttp`
sends from one asyncio loop instead of a thread per send and costs about a
fifth. That matters once our own overhead, not the gateway, limits the rate.

Every engine holds a request to one deadline, WHATSAPP_TIMEOUT, for connect,
send and the whole answer together: a gateway that answers and then trickles
its body cannot hold a send (or a shutdown) longer. Only the first
MAX_ANSWER_BYTES of an answer are read; that is plenty to classify it.
"""

import abc
import asyncio
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import requests
import urllib3
from requests.adapters import HTTPAdapter

MAX_ANSWER_BYTES = 1 << 20
CONNECT_TIMEOUT = 3.0  # seconds at most for the connection, within the deadline


class EngineTimeout(Exception):
    """No answer in time: the endpoint may still have taken the request."""


class EngineError(Exception):
    """The request never got an HTTP answer (refused, reset, DNS, TLS...)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    text: str


class HttpEngine(Protocol):
    def get(self) -> Answer:
        """A blocking GET, for the start-up probe, before any loop runs."""

    async def post(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        """A POST, awaited on the sends' loop."""

    def close(self) -> None: ...


def deadline_timeout(timeout: float) -> urllib3.Timeout:
    """Connect and wait for the headers within `timeout` in all (urllib3
    gives the read what the connect left); the body is held to it by `read_answer`."""
    return urllib3.Timeout(connect=min(timeout, CONNECT_TIMEOUT), read=timeout, total=timeout)


def read_answer(response: urllib3.BaseHTTPResponse, deadline: float) -> str:
    """The body of an unread urllib3 response, at most MAX_ANSWER_BYTES of it,
    before `deadline` (monotonic). Each read waits at most what is left of
    the deadline, so a trickle cannot stretch it. A connection left with
    unread bytes is closed rather than reused."""
    chunks, size, complete = [], 0, False
    sock = getattr(response.connection, "sock", None)
    try:
        while size < MAX_ANSWER_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineTimeout("the answer took longer than WHATSAPP_TIMEOUT")
            if sock is not None:
                sock.settimeout(left)
            chunk = response.read1(MAX_ANSWER_BYTES - size)
            if not chunk:
                complete = True
                break
            chunks.append(chunk)
            size += len(chunk)
    except urllib3.exceptions.TimeoutError as exc:
        raise EngineTimeout(type(exc).__name__) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise EngineError(type(exc).__name__) from None
    finally:
        if not complete:
            response.close()
        response.release_conn()
    return b"".join(chunks).decode("utf-8", "replace")


class BlockingEngine(abc.ABC):
    """GET and POST through a subclass's blocking `call`: a POST runs in the
    loop's executor, one thread per send in flight."""

    def get(self) -> Answer:
        return self.call("GET", None, {})

    async def post(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        return await asyncio.get_running_loop().run_in_executor(None, self.call, "POST", body, headers)

    @abc.abstractmethod
    def call(self, method: str, body: bytes | None, headers: Mapping[str, str]) -> Answer: ...


class RequestsEngine(BlockingEngine):
    """A pooled requests.Session: the default, proxy-aware engine."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float, pool_size: int):
        self.url = url
        self.deadline = timeout
        self.timeout = deadline_timeout(timeout)
        self.session = requests.Session()
        # Proxies are read from the environment once, not on every request.
        self.session.proxies.update(requests.utils.get_environ_proxies(url))
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(headers)

    def call(self, method: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        deadline = time.monotonic() + self.deadline
        try:
            # requests hands a urllib3 Timeout on to urllib3 as it is (its stubs say float only).
            response = self.session.request(
                method,
                self.url,
                data=body,
                headers=headers,
                timeout=self.timeout,  # type: ignore[arg-type]
                stream=True,
            )
        except requests.Timeout as exc:
            raise EngineTimeout(type(exc).__name__) from None
        except requests.RequestException as exc:
            raise EngineError(type(exc).__name__) from None
        return Answer(response.status_code, response.headers, read_answer(response.raw, deadline))

    def close(self) -> None:
        self.session.close()


class Urllib3Engine(BlockingEngine):
    """A bare urllib3 connection pool: no proxies, half the CPU of requests."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float, pool_size: int):
        self.url = url
        self.headers = dict(headers)
        self.deadline = timeout
        self.timeout = deadline_timeout(timeout)
        # block=True: never more connections than sends in flight.
        self.pool = urllib3.connection_from_url(url, maxsize=pool_size, block=True)
        self.path = urllib3.util.parse_url(url).request_uri

    def call(self, method: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        deadline = time.monotonic() + self.deadline
        try:
            response = self.pool.urlopen(
                method,
                self.path,
                body=body,
                headers={**self.headers, **headers},
                retries=False,
                timeout=self.timeout,
                redirect=False,
                preload_content=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:
            # Checked first: urllib3 makes it a subclass of ConnectTimeoutError.
            raise EngineError(type(exc).__name__) from None
        except urllib3.exceptions.TimeoutError as exc:
            raise EngineTimeout(type(exc).__name__) from None
        except urllib3.exceptions.HTTPError as exc:
            raise EngineError(type(exc).__name__) from None
        return Answer(response.status, response.headers, read_answer(response, deadline))

    def close(self) -> None:
        self.pool.close()


class AiohttpEngine:
    """An aiohttp session on the sends' loop itself: no thread per send. No
    proxies. The session is made on first use, inside the loop that will use it."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float, pool_size: int):
        self.url = url
        self.headers = dict(headers)
        # `total` covers the whole answer, body included, and whatever state a
        # connection is left in (seen: a request on a reset connection never ended).
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, CONNECT_TIMEOUT))
        self.pool_size = pool_size
        self.session: aiohttp.ClientSession | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def new_session(self, pool_size: int) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=pool_size)
        return aiohttp.ClientSession(connector=connector, headers=self.headers, timeout=self.timeout)

    def get(self) -> Answer:
        """For the start-up probe, before any loop runs: a session of its own."""

        async def probe() -> Answer:
            async with self.new_session(1) as session:
                return await self.call(session, "GET", None, {})

        return asyncio.run(probe())

    async def post(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        if self.session is None:
            self.loop = asyncio.get_running_loop()
            self.session = self.new_session(self.pool_size)
        return await self.call(self.session, "POST", body, headers)

    async def call(self, session, method: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        try:
            async with session.request(method, self.url, data=body, headers=headers) as response:
                chunks, size = [], 0
                while size < MAX_ANSWER_BYTES and (chunk := await response.content.read(MAX_ANSWER_BYTES - size)):
                    chunks.append(chunk)
                    size += len(chunk)
                if not response.content.at_eof():
                    response.close()  # unread bytes: not a connection to reuse
                return Answer(response.status, response.headers, b"".join(chunks).decode("utf-8", "replace"))
        except TimeoutError as exc:
            raise EngineTimeout(type(exc).__name__) from None
        except aiohttp.ClientError as exc:
            raise EngineError(type(exc).__name__) from None

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def close(self) -> None:
        """Called from outside the loop, while it still runs."""
        if self.loop is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.aclose(), self.loop).result(timeout=5)


ENGINES: dict[str, Callable[..., HttpEngine]] = {
    "requests": RequestsEngine,
    "urllib3": Urllib3Engine,
    "aiohttp": AiohttpEngine,
}

# Threads sending through a blocking engine are made to hand the GIL on every
# 5 ms (CPython's default switch interval); with hundreds of them in flight
# most of those hand-overs are churn. Longer turns measured at 200 ms per
# request, 500 threads per consumer: 13% more msg/s for the consumers, 33% for
# the minimal reference pipeline (bench/run.py). The asyncio engine does not
# gain from it (two busy threads), so it keeps the default.
THREADED_SWITCH_INTERVAL = 0.02


def threaded(name: str) -> bool:
    """Does the engine `name` send from threads, one per send in flight?"""
    engine = ENGINES[name]
    return isinstance(engine, type) and issubclass(engine, BlockingEngine)


def tune_interpreter_for(name: str) -> None:
    """Longer GIL turns for a process whose sends run on many threads."""
    if threaded(name):
        sys.setswitchinterval(THREADED_SWITCH_INTERVAL)
