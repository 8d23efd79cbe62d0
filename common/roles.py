"""Wiring: Settings → the parts of a producer or consumer → the driver."""

from common.config import Settings
from common.consumer import Consumer
from common.db import CampaignTable
from common.jobs import JobQueue, connect
from common.producer import Producer
from common.runner import Driver
from common import providers
from common.http_engines import ENGINES
from common.sender import HttpSender


def campaign_table(settings: Settings) -> CampaignTable:
    return CampaignTable(settings.database, settings.table, settings.phone_column, settings.status_column,
                         settings.message_columns)


def job_queue(settings: Settings) -> JobQueue:
    return JobQueue(connect(settings.redis_url), settings.partition, settings.key_prefix)


def sender_for(settings: Settings) -> HttpSender:
    """The provider the settings name, on the HTTP engine they name."""
    provider = providers.build(settings.provider, settings)
    engine = ENGINES[settings.http_engine](provider.url, provider.headers, settings.request_timeout,
                                           settings.concurrency)
    return HttpSender(engine, provider)


def run_producer(settings: Settings) -> None:
    producer = Producer(settings, campaign_table(settings), job_queue(settings))
    Driver(producer, settings.poll_interval, settings.once, min_delay=settings.poll_interval).run()


def run_consumer(settings: Settings) -> None:
    sender = sender_for(settings)
    consumer = Consumer(settings, campaign_table(settings), job_queue(settings), sender)
    Driver(consumer, settings.poll_interval, settings.once).run()
