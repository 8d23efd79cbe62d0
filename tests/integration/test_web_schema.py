"""The web service against its own OpenAPI document, on the real MariaDB and
Redis: schemathesis sends what the document allows and what it does not, and
every answer must be one the document names (status, content type, schema,
headers), never a 5xx; a body outside the document must be refused."""

import base64

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from common.ops.openapi import document
from tests.integration.test_web import AUTH, web  # noqa: F401  (the service as a process)

pytestmark = pytest.mark.integration

BASIC = {"Authorization": "Basic " + base64.b64encode(":".join(AUTH).encode()).decode()}
# What the service serves for its two partitions, checked in web_api. Loaded
# here rather than from the server because schemathesis.pytest.from_fixture
# does not run under pytest 9 (it reads a node attribute pytest 9 removed).
api = schemathesis.openapi.from_dict(document(2))


@pytest.fixture
def web_api(web, campaign):  # noqa: F811
    """The service's base URL, once it serves `api`; over a table with one
    message variable, so that some generated params reach MySQL."""
    assert requests.get(f"{web}/openapi.json", auth=AUTH, timeout=5).json() == api.raw_schema
    campaign.query("ALTER TABLE campaign_master_1 ADD COLUMN column2 VARCHAR(40)")
    return web


@api.parametrize()
@settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_answer_is_one_the_document_names(case, web_api):
    # A body the document allows may still be refused (a phone that is no
    # number, params naming no column): that is a documented 400, not a failure.
    case.call_and_validate(base_url=web_api, headers=BASIC, timeout=10, excluded_checks=[positive_data_acceptance])
