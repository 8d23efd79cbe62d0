"""A fast endpoint for the benchmark's slow-gateway runs: every send waits
--latency-ms on an asyncio timer, not in a thread, then answers 200.

The project's mock (common/mock_whatsapp.py) spends a thread per connection,
so at 200 ms and thousands of sends a second it would take the CPU the
benchmark is measuring. This one only counts sends by Idempotency-Key and
reports them at GET /_mock/stats, like the mock.

    python -m bench.async_endpoint --port 0 --latency-ms 200
"""

import asyncio
import itertools
from collections import Counter

import click
from aiohttp import web

SEND_PATH = "/test_camp"


def make_app(latency_ms: float) -> web.Application:
    keys: Counter = Counter()
    ids = itertools.count(1)

    async def send(request: web.Request) -> web.Response:
        await request.read()
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        keys[request.headers.get("Idempotency-Key", "")] += 1
        return web.json_response({"messaging_product": "whatsapp", "messages": [{"id": f"wamid.bench{next(ids)}"}]})

    async def probe(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def stats(_request: web.Request) -> web.Response:
        delivered = sum(keys.values())
        return web.json_response({"delivered": delivered, "duplicates": delivered - len(keys)})

    app = web.Application()
    app.router.add_post(SEND_PATH, send)
    app.router.add_get(SEND_PATH, probe)
    app.router.add_get("/_mock/stats", stats)
    return app


async def serve(port: int, latency_ms: float) -> None:
    runner = web.AppRunner(make_app(latency_ms), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"async endpoint listening on http://127.0.0.1:{bound}", flush=True)
    await asyncio.Event().wait()


@click.command()
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port (printed).")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True)
def main(port: int, latency_ms: float) -> None:
    """Answer POST /test_camp after --latency-ms, counting sends by Idempotency-Key."""
    try:
        asyncio.run(serve(port, latency_ms))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
