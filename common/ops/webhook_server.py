"""`python -m common.webhooks`: a lean receiver for the gateways' webhooks.

The web service answers webhooks too, but through Flask on waitress, at
about a millisecond of CPU per request: fine for gateways that batch events
(Meta puts many statuses in one POST), short of a burst of thousands of
single-event requests a second. This process serves only /webhooks/*,
/metrics and /health, on aiohttp and uvloop, with the same verification
(common.ops.webhooks). Requests that arrive while the inbox is being
written to wait for the next write, so one RPUSH carries many of them: each
is answered once its events are in Redis. The web service's receipt writer
takes them to MySQL as before.
"""

import asyncio
import logging
import signal
import sys

import click
import uvloop
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.cli import KEY_PREFIX_OPTION, REDIS_URL_OPTION
from common.errors import CampaignError, ServiceUnavailable
from common.ops.webhooks import UNAVAILABLE, WEBHOOK_OPTIONS, Answer, WebhookSecrets, delivery, subscription
from common.queue.inbox import Inbox
from common.queue.jobs import connect
from common.settings import check_redis_url

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # bytes: a webhook body larger than this is refused (413)
STOP_GRACE = 5.0  # seconds a stop waits for requests being answered


class InboxWriter:
    """Keeps entries in the inbox for many requests at once: while one RPUSH
    is on its way (in a thread: the Redis client blocks), the entries of
    requests arriving meanwhile gather for the next."""

    def __init__(self, inbox: Inbox):
        self.inbox = inbox
        self.waiting: list[tuple[str, asyncio.Future]] = []
        self.writing = False

    async def keep(self, entry: str) -> None:
        """Returns once the entry is in Redis; raises ServiceUnavailable when it cannot be."""
        done = asyncio.get_running_loop().create_future()
        self.waiting.append((entry, done))
        if not self.writing:
            self.writing = True
            asyncio.get_running_loop().create_task(self.write())
        await done

    async def write(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                try:
                    await asyncio.to_thread(self.inbox.keep, [entry for entry, _ in batch])
                except Exception as exc:  # Redis away, or refusing our credentials: none of them is kept
                    for _, done in batch:
                        done.set_exception(exc)
                else:
                    for _, done in batch:
                        done.set_result(None)
        finally:
            self.writing = False


def answered(answer: Answer) -> web.Response:
    if isinstance(answer.body, str):
        return web.Response(text=answer.body, status=answer.status)
    return web.json_response(answer.body, status=answer.status)


def receiver(secrets: WebhookSecrets, inbox: Inbox, max_body: int = MAX_BODY) -> web.Application:
    writer = InboxWriter(inbox)

    async def meta_subscription(request: web.Request) -> web.Response:
        return answered(subscription(secrets, request.query.get))

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        answer = delivery(secrets, request.match_info["name"], request.headers.get, body, request.remote)
        if answer.entry:
            try:
                await writer.keep(answer.entry)
            except ServiceUnavailable:
                return answered(UNAVAILABLE)
            except Exception as exc:  # e.g. Redis refused our credentials after a password change
                log.error("could not keep webhook events: %s", exc)
                return answered(UNAVAILABLE)
        return answered(answer)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=max_body)
    app.router.add_get("/webhooks/meta", meta_subscription)
    app.router.add_post("/webhooks/{name}", receive)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    return app


def serve(app: web.Application, host: str, port: int) -> None:
    """Run until SIGINT or SIGTERM; the line 'listening on URL' says where.
    A stop lets the requests being answered finish (up to STOP_GRACE seconds)."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, shutdown_timeout=STOP_GRACE)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        log.info("listening on http://%s:%s", host, bound)
        try:
            await stop.wait()
            log.info("stopping: answering the requests in progress")
        finally:
            await runner.cleanup()

    uvloop.run(run())
    # Every request is answered and stored: a second stop signal (Ctrl-C
    # and a process manager's SIGTERM both) has nothing left to stop.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


@click.command(context_settings={"max_content_width": 100})
@click.option(
    "--host",
    envvar="WEBHOOK_HOST",
    default="127.0.0.1",
    show_envvar=True,
    show_default=True,
    help="Address to listen on; 0.0.0.0 behind the TLS proxy the gateways reach.",
)
@click.option(
    "--port",
    envvar="WEBHOOK_PORT",
    type=click.IntRange(0, 65535),
    default=8001,
    show_envvar=True,
    show_default=True,
    help="Port to listen on (0: any free one, printed at start).",
)
def main(host, port, redis_url, key_prefix, meta_app_secret, meta_verify_token, waha_webhook_key, gowa_webhook_secret):
    """Receive the gateways' webhooks (/webhooks/meta, /webhooks/waha,
    /webhooks/gowa) into the Redis inbox; the web service writes them to MySQL."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s webhooks %(name)s: %(message)s"
    )
    try:
        client = connect(check_redis_url(redis_url))
        inbox = Inbox(client, key_prefix)
        inbox.depth()  # Redis answers, with our credentials
        secrets = WebhookSecrets(meta_app_secret, meta_verify_token, waha_webhook_key, gowa_webhook_secret)
        if not any(secrets.for_dialect(name) for name in ("meta", "waha", "gowa")):
            log.warning("no webhook secret is set: every /webhooks/* route answers 404")
        app = receiver(secrets, inbox)
    except CampaignError as exc:
        click.echo(f"webhooks: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    try:
        serve(app, host, port)
    except OSError as exc:
        click.echo(f"webhooks: error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
        sys.exit(2)


for _option in [REDIS_URL_OPTION, KEY_PREFIX_OPTION, *WEBHOOK_OPTIONS]:  # applied to the command: each one is appended
    main = _option(main)
