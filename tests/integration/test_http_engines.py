"""Each HTTP engine against the real mock over loopback: answers, timeouts and
connection failures come back in the same shape whichever engine carries them."""

import asyncio
import socket
import sys

import pytest

from common.delivery.engines import (
    ENGINES,
    THREADED_SWITCH_INTERVAL,
    EngineError,
    EngineTimeout,
    tune_interpreter_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("name", sorted(ENGINES))]

HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer secret-token"}
BODY = (
    b'{"messaging_product":"whatsapp","to":"628100000001","type":"template",'
    b'"template":{"name":"hello_world","language":{"code":"en_US"}}}'
)


def engine_for(name, url, timeout=2.0):
    return ENGINES[name](url, HEADERS, timeout, pool_size=4)


def post_once(engine, key):
    """One POST on a loop of its own, then close the engine."""

    async def post():
        return await engine.post(BODY, {"Idempotency-Key": key})

    try:
        return asyncio.run(post())
    finally:
        if hasattr(engine, "aclose"):
            asyncio.run(engine.aclose())
        else:
            engine.close()


def test_a_post_reaches_the_endpoint_with_its_headers_and_body(name, mock):
    mock.configure(token="secret-token")
    engine = engine_for(name, mock.url)
    answer = post_once(engine, "campaign_master_1:1")
    assert answer.status == 200
    assert answer.text.startswith("{") and "wamid" in answer.text
    assert mock.deliveries() == {"campaign_master_1:1": 1}


def test_the_start_up_probe_sees_the_endpoint(name, mock):
    mock.configure(token="secret-token")
    assert engine_for(name, mock.url).get().status != 401


def test_a_hung_endpoint_is_a_timeout(name, mock):
    mock.configure(timeout_rate=1.0, hang_seconds=2)
    engine = engine_for(name, mock.url, timeout=0.3)
    with pytest.raises(EngineTimeout):
        post_once(engine, "campaign_master_1:2")


def test_a_reset_connection_is_an_error_not_a_timeout(name, mock):
    mock.configure(reset_rate=1.0)
    engine = engine_for(name, mock.url)
    with pytest.raises(EngineError):
        post_once(engine, "campaign_master_1:3")


def test_a_closed_port_is_an_error_not_a_timeout(name):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = engine_for(name, f"http://127.0.0.1:{port}/test_camp")
    with pytest.raises(EngineError):
        post_once(engine, "campaign_master_1:4")


def test_threads_sending_through_a_blocking_engine_get_longer_gil_turns(name):
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        tune_interpreter_for(name)
        expected = 0.005 if name == "aiohttp" else THREADED_SWITCH_INTERVAL  # asyncio: two busy threads
        assert sys.getswitchinterval() == pytest.approx(expected)
    finally:
        sys.setswitchinterval(before)
