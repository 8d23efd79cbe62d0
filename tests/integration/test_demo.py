"""The README's first command, scripts/demo, on a small campaign: the four
processes, the mock endpoint and the dashboard, every row sent once, and the
mock's signed receipts stored by the web service as delivered and read."""

import re
import socket

import pytest

from tests.conftest import run_role

pytestmark = pytest.mark.integration


def test_the_demo_sends_every_row_once_offers_the_dashboard_and_hears_back(mysql_db, role_env, real_redis):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_role(
        "scripts.demo", role_env, "--rows", "300", "--bad-phones", "0.01", "--web-port", str(port), timeout=180
    )
    assert result.returncode == 0, result.stderr[-1000:]
    assert f"dashboard at http://127.0.0.1:{port}/" in result.stdout
    assert "rows 300 | sent 297 | failed 3 | pending 0 | job keys left 0" in result.stdout
    assert "failed 2: phone has characters other than digits" in result.stdout
    assert "failed 1: phone is not a valid number in its country's numbering plan" in result.stdout
    assert "demo: every row sent exactly once" in result.stdout
    receipts = re.search(r"^receipts: delivered (\d+) \| read (\d+) \| .* not posted (\d+)$", result.stdout, re.M)
    assert receipts, result.stdout
    delivered, read, not_posted = map(int, receipts.groups())
    assert 0 < read < delivered <= 297 and not_posted == 0
    assert "still coming" not in result.stdout
