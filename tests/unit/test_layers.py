"""The layers stay apart: settings and the operator tools never load an HTTP client."""

import subprocess
import sys

import pytest

from common.delivery import providers
from common.delivery.engines import ENGINES
from common.settings import ENGINE_NAMES, PROVIDER_NAMES


def test_settings_name_every_engine_and_gateway_delivery_has():
    assert sorted(ENGINE_NAMES) == sorted(ENGINES)
    assert sorted(PROVIDER_NAMES) == providers.names()


@pytest.mark.parametrize("module", ["common.settings", "common.cli", "common.ops.status", "common.ops.web"])
def test_settings_status_and_web_load_no_http_client(module):
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, {module}; "
            "print(sorted(m for m in ('aiohttp', 'requests', 'urllib3', 'common.delivery.engines')"
            " if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert loaded.strip() == "[]"
