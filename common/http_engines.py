"""HTTP engines: the part of a sender that moves bytes to one URL and back.

A sender builds requests and reads answers; the engine only carries them, so a
faster engine replaces another without touching senders or loops. `requests`
honours proxy settings from the environment (HTTPS_PROXY, NO_PROXY); `urllib3`
talks to the URL directly and costs about half the CPU per request; `aiohttp`
sends from one asyncio loop instead of a thread per send and costs about a
fifth. That matters once our own overhead, not the gateway, limits the rate.
"""

import abc
import asyncio
from dataclasses import dataclass
from typing import Mapping, Protocol

import aiohttp
import requests
import urllib3
from requests.adapters import HTTPAdapter


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
    is_async: bool  # True: `post` is a coroutine, run on the consumer's asyncio loop

    def get(self) -> Answer: ...

    def post(self, body: bytes, headers: Mapping[str, str]) -> Answer: ...

    def close(self) -> None: ...


class BlockingEngine(abc.ABC):
    """GET and POST through a subclass's blocking `call`, on the caller's thread."""

    is_async = False

    def get(self) -> Answer:
        return self.call("GET", None, {})

    def post(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        return self.call("POST", body, headers)

    @abc.abstractmethod
    def call(self, method: str, body: bytes | None, headers: Mapping[str, str]) -> Answer: ...


class RequestsEngine(BlockingEngine):
    """A pooled requests.Session: the default, proxy-aware engine."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float, pool_size: int):
        self.url = url
        # Connect and read are bounded separately.
        self.timeout = (min(timeout, 3.0), timeout)
        self.session = requests.Session()
        # Proxies are read from the environment once, not on every request.
        self.session.proxies.update(requests.utils.get_environ_proxies(url))
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(headers)

    def call(self, method: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        try:
            response = self.session.request(method, self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise EngineTimeout(type(exc).__name__) from None
        except requests.RequestException as exc:
            raise EngineError(type(exc).__name__) from None
        return Answer(response.status_code, response.headers, response.text)

    def close(self) -> None:
        self.session.close()


class Urllib3Engine(BlockingEngine):
    """A bare urllib3 connection pool: no proxies, half the CPU of requests."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float, pool_size: int):
        self.url = url
        self.headers = dict(headers)
        self.timeout = urllib3.Timeout(connect=min(timeout, 3.0), read=timeout)
        # block=True: never more connections than sends in flight.
        self.pool = urllib3.connection_from_url(url, maxsize=pool_size, block=True)
        self.path = urllib3.util.parse_url(url).request_uri

    def call(self, method: str, body: bytes | None, headers: Mapping[str, str]) -> Answer:
        try:
            response = self.pool.urlopen(method, self.path, body=body, headers={**self.headers, **headers},
                                         retries=False, timeout=self.timeout, redirect=False)
        except urllib3.exceptions.NewConnectionError as exc:
            # Checked first: urllib3 makes it a subclass of ConnectTimeoutError.
            raise EngineError(type(exc).__name__) from None
        except urllib3.exceptions.TimeoutError as exc:
            raise EngineTimeout(type(exc).__name__) from None
        except urllib3.exceptions.HTTPError as exc:
            raise EngineError(type(exc).__name__) from None
        return Answer(response.status, response.headers, response.data.decode("utf-8", "replace"))

    def close(self) -> None:
        self.pool.close()


class AiohttpEngine:
    """An aiohttp session: `post` is a coroutine, run by the consumer's asyncio
    loop (`is_async`). No proxies. The session is made on first use, inside
    the loop that will use it."""

    is_async = True

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float, pool_size: int):
        self.url = url
        self.headers = dict(headers)
        # `total` bounds a request whatever state its connection is left in
        # (seen: a request on a connection the server had reset never ended).
        self.timeout = aiohttp.ClientTimeout(total=min(timeout, 3.0) + timeout, connect=min(timeout, 3.0),
                                             sock_read=timeout)
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
                text = (await response.read()).decode("utf-8", "replace")
                return Answer(response.status, response.headers, text)
        except asyncio.TimeoutError as exc:
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


ENGINES = {"requests": RequestsEngine, "urllib3": Urllib3Engine, "aiohttp": AiohttpEngine}
