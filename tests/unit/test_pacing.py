"""Rates, send windows, and the per-sender settings lists."""

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from common.errors import ConfigError
from common.settings import MySQLTarget, Partition, Settings
from common.timing import SendWindow, parse_rate

JAKARTA = ZoneInfo("Asia/Jakarta")


@pytest.mark.parametrize("text, per_second", [("80/s", 80), ("20/min", 1 / 3), ("1800/h", 0.5), ("2.5 / sec", 2.5)])
def test_rates_read_as_sends_per_second(text, per_second):
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["80", "0/s", "fast", "-3/s", "10/day"])
def test_a_bad_rate_is_a_config_error(text):
    with pytest.raises(ConfigError, match="80/s"):
        parse_rate(text)


def at(hour, minute=0):
    return datetime(2026, 11, 23, hour, minute, tzinfo=JAKARTA)


def test_a_day_window_is_open_between_its_hours_in_its_zone():
    window = SendWindow.parse("09:00-18:00", "Asia/Jakarta")
    assert [window.is_open(at(h)) for h in (8, 9, 17, 18)] == [False, True, True, False]
    assert window.is_open(datetime(2026, 11, 23, 3, tzinfo=ZoneInfo("UTC")))  # 10:00 in Jakarta
    assert window.opens_in(at(8, 30)) == 30 * 60
    assert window.opens_in(at(19)) == 14 * 3600
    assert window.opens_in(at(12)) == 0


def test_a_window_in_host_time_follows_daylight_saving(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        window = SendWindow.parse("09:00-18:00", None)
        utc = ZoneInfo("UTC")
        # 09:30 in Berlin both times: CET (UTC+1) in January, CEST (UTC+2) in July.
        assert window.is_open(datetime(2026, 1, 15, 8, 30, tzinfo=utc))
        assert window.is_open(datetime(2026, 7, 15, 7, 30, tzinfo=utc))
        assert not window.is_open(datetime(2026, 7, 15, 6, 30, tzinfo=utc))  # 08:30 CEST
        assert str(window) == "09:00-18:00 local time"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_window_may_span_midnight():
    window = SendWindow.parse("22:00-06:00", "Asia/Jakarta")
    assert [window.is_open(at(h)) for h in (21, 22, 2, 6)] == [False, True, True, False]


@pytest.mark.parametrize(
    "text, zone", [("9-18", None), ("09:00-09:00", None), ("25:00-26:00", None), ("09:00-18:00", "Mars/Olympus")]
)
def test_a_bad_window_is_a_config_error(text, zone):
    with pytest.raises(ConfigError):
        SendWindow.parse(text, zone)


def settings(**values):
    return Settings(
        database=MySQLTarget("h", 3306, "u", "", "d"), redis_url="redis://x", partition=Partition(1, 2), **values
    )


def test_one_waha_url_with_three_sessions_makes_three_senders():
    many = settings(
        provider="waha",
        text="hi",
        whatsapp_url="http://waha:3000",
        waha_session="default, marketing,support",
        rate="20/min",
    ).per_sender()
    assert [(s.whatsapp_url, s.waha_session, s.rate) for s in many] == [
        ("http://waha:3000", "default", "20/min"),
        ("http://waha:3000", "marketing", "20/min"),
        ("http://waha:3000", "support", "20/min"),
    ]
    assert settings(rate="80/s").sender_rates(3) == [80, 80, 80]


def test_per_sender_lists_must_have_one_value_or_one_per_sender():
    with pytest.raises(ConfigError, match="WHATSAPP_TOKEN lists 2 values for 3 senders"):
        settings(whatsapp_url="http://a/x,http://b/x,http://c/x", whatsapp_token="t1,t2")
    with pytest.raises(ConfigError, match="WHATSAPP_URL"):
        settings(whatsapp_url="http://a/x,ftp://b")
    with pytest.raises(ConfigError, match="rate"):
        settings(rate="80/s,lots")
