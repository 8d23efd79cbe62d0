"""Wiring: Settings → the parts of a producer or consumer → the driver."""

from common.config import Settings
from common.consumer import Consumer
from common.db import CampaignTable
from common.jobs import JobQueue, connect
from common.producer import Producer
from common.runner import Driver
from common.sender import webhook_sender


def campaign_table(settings: Settings) -> CampaignTable:
    return CampaignTable(settings.database, settings.table, settings.phone_column, settings.status_column)


def job_queue(settings: Settings) -> JobQueue:
    return JobQueue(connect(settings.redis_url), settings.partition, settings.key_prefix)


def run_producer(settings: Settings) -> None:
    producer = Producer(settings, campaign_table(settings), job_queue(settings))
    Driver(producer, settings.poll_interval, settings.once, min_delay=settings.poll_interval).run()


def run_consumer(settings: Settings) -> None:
    sender = webhook_sender(settings)
    consumer = Consumer(settings, campaign_table(settings), job_queue(settings), sender)
    Driver(consumer, settings.poll_interval, settings.once).run()
