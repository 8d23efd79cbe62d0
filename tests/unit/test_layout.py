"""A role refuses to start beside live processes that use another partition count."""

import time

import pytest

from common.errors import ConfigError
from common.queue import keys
from common.queue.heartbeat import ALIVE_FOR, Heartbeat, check_layout
from common.settings import Partition


def beat_as(client, pid: int, role: str, partition: str, age: float = 0.0) -> None:
    """The heartbeat another process (another pid on another host) left `age` seconds ago."""
    key = f"process:otherhost:{pid}:{role}"
    client.hset(key, mapping={"role": role, "partition": partition, "host": "otherhost", "pid": pid})
    client.zadd(keys.processes(""), {key: time.time() - age})


def test_live_processes_with_another_partition_count_refuse_the_start(fake_redis):
    beat_as(fake_redis, 101, "consumer", "1/2")
    beat_as(fake_redis, 102, "producer", "0/2")
    with pytest.raises(ConfigError) as refused:
        check_layout(fake_redis, "", "consumer", Partition(0, 3))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("live consumers and producers of this campaign use N=2 partitions and this consumer N=3")
    assert "stop them all" in message


def test_live_processes_with_the_same_partition_count_are_joined(fake_redis):
    beat_as(fake_redis, 101, "consumer", "1/3")
    check_layout(fake_redis, "", "consumer", Partition(0, 3))


def test_a_process_not_heard_from_lately_does_not_count(fake_redis):
    beat_as(fake_redis, 101, "consumer", "1/2", age=ALIVE_FOR + 1)
    check_layout(fake_redis, "", "consumer", Partition(0, 3))


def test_another_campaign_does_not_count(fake_redis):
    beat_as(fake_redis, 101, "consumer", "1/2")
    check_layout(fake_redis, "other:", "consumer", Partition(0, 3))


def test_our_own_heartbeat_does_not_count(fake_redis):
    Heartbeat(fake_redis, "", "producer", Partition(0, 2)).beat(dict)
    check_layout(fake_redis, "", "consumer", Partition(0, 3))
