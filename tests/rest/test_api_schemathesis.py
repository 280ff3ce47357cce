"""Property-based tests of /api/v1 from its own OpenAPI document (schemathesis, through the WSGI
app): whatever a client sends, no answer is a 5xx, and every answer fits its declared schema.

The schema is loaded when the module is imported (schemathesis' lazy fixture loader does not run on
pytest 9), so the app here has an engine of its own on a temporary SQLite file."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from engine.clock import FrozenClock
from tests.conftest import make_engine
from tests.rest.conftest import ADMIN, make_app
from tests.web.conftest import deploy_web_fixtures, start_request

_DIRECTORY = Path(tempfile.mkdtemp(prefix="api-fuzz-"))
_ENGINE = make_engine(f"sqlite:///{_DIRECTORY / 'fuzz.db'}", FrozenClock(datetime(2026, 3, 2, 1, tzinfo=UTC)),
                      _DIRECTORY)
_APP = make_app(_ENGINE)
# the fuzzer sends wrong credentials on purpose (its authentication checks): no lock, no throttling
_ENGINE.settings.login_max_failures = 10**9
_APP.config["RATELIMIT_ENABLED"] = False
deploy_web_fixtures(_ENGINE)
start_request(_ENGINE, "SR-FUZZ-1")
atexit.register(shutil.rmtree, _DIRECTORY, ignore_errors=True)
atexit.register(_ENGINE.db.dispose)

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", _APP, headers={"Authorization": ADMIN["Authorization"]})


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_api_answers_within_its_schema(case):
    # Not checked: that every schema-valid request is accepted. Whether a file is a BPMN diagram the
    # engine can run, or a process's form is filled in, no OpenAPI schema can say; that is a 400.
    case.call_and_validate(headers={"Authorization": ADMIN["Authorization"]},
                           excluded_checks=[positive_data_acceptance])
