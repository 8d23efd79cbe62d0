"""Wiring: Settings → the parts of a producer or consumer → the driver."""

from common import metrics
from common.delivery import providers
from common.delivery.engines import ENGINES, tune_interpreter_for
from common.delivery.sender import HttpSender
from common.errors import ConfigError
from common.process.consumer import Consumer
from common.process.driver import Driver
from common.process.producer import Producer
from common.queue.heartbeat import Heartbeat, check_layout
from common.queue.jobs import JobQueue, connect
from common.queue.run_lock import RunLock
from common.settings import Settings
from common.store.campaign import CampaignTable


def campaign_table(settings: Settings) -> CampaignTable:
    return CampaignTable(
        settings.database, settings.table, settings.phone_column, settings.status_column, settings.message_columns
    )


def job_queue(settings: Settings, role: str) -> JobQueue:
    """The partition's queue, once Redis answers and no live process uses another partition count."""
    queue = JobQueue(connect(settings.redis_url), settings.partition, settings.key_prefix)
    check_layout(queue.redis, settings.key_prefix, role, settings.partition)
    return queue


def sender_for(settings: Settings) -> HttpSender:
    """The provider the settings name, on the HTTP engine they name."""
    provider = providers.build(settings.provider, settings)
    engine = ENGINES[settings.http_engine](
        provider.url, provider.headers, settings.request_timeout, settings.concurrency
    )
    return HttpSender(engine, provider)


def senders_for(settings: Settings) -> list[HttpSender]:
    """One sender per endpoint, session, phone number id or account the settings list."""
    return [sender_for(one) for one in settings.per_sender()]


def heartbeat(settings: Settings, queue: JobQueue, role: str) -> Heartbeat:
    return Heartbeat(queue.redis, settings.key_prefix, role, settings.partition)


def run_lock(settings: Settings, queue: JobQueue, role: str) -> RunLock | None:
    """Runs from cron (--once) and --exclusive ones keep a second copy of the same role and partition out."""
    if settings.once or settings.exclusive:
        return RunLock(queue.redis, settings.key_prefix, role, settings.partition)
    return None


def serve_metrics(settings: Settings) -> None:
    if settings.metrics_port:
        try:
            metrics.serve(settings.metrics_port, settings.metrics_host)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: {exc.strerror}"
            ) from None


def run_producer(settings: Settings) -> None:
    serve_metrics(settings)
    driver = Driver(settings.poll_interval, settings.once, min_delay=settings.poll_interval)
    with driver.handling_signals():
        queue = driver.until_up(lambda: job_queue(settings, "producer"))
        producer = Producer(settings, campaign_table(settings), queue)
        driver.run(producer, heartbeat(settings, queue, "producer"), run_lock(settings, queue, "producer"))


def run_consumer(settings: Settings) -> None:
    tune_interpreter_for(settings.http_engine)
    serve_metrics(settings)
    driver = Driver(settings.poll_interval, settings.once)
    with driver.handling_signals():
        queue = driver.until_up(lambda: job_queue(settings, "consumer"))
        consumer = Consumer(settings, campaign_table(settings), queue, senders_for(settings))
        if settings.metrics_port:
            metrics.watch_queue_depth(str(settings.partition), queue.depth)
            for route in consumer.senders.routes:
                metrics.watch_breaker(route.name, route.breaker)
        driver.run(consumer, heartbeat(settings, queue, "consumer"), run_lock(settings, queue, "consumer"))
