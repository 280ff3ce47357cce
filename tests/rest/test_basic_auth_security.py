"""HTTP Basic on /engine-rest, /api/v1 and the external-task REST: remembered credentials stop
working on the next request after a deactivation or a password change; failed checks count towards
the same account lock as the sign-in form, and a locked account or throttled address gets 429 with
Retry-After; every check is in the audit log."""

from __future__ import annotations

import pytest

from engine.identity import IdentityService
from tests.rest.conftest import FRONTDESK, basic
from web import create_app

WORKER = ("sms.relay", "Gateway-Relay-5521")
FETCH = {"workerId": "w1", "maxTasks": 1, "topics": [{"topicName": "notify", "lockDuration": 1000}]}


@pytest.fixture
def worker(engine) -> dict:
    IdentityService(engine).create_user(*WORKER[:1], "短信执行器", WORKER[1], ["external_worker"])
    return basic(*WORKER)


def calls(client, headers):
    """One request to each interface that takes Basic credentials."""
    return {
        "engine-rest": client.get("/engine-rest/deployment", headers=headers).status_code,
        "api": client.get("/api/v1/tasks", headers=headers).status_code,
        "external-task": client.post("/engine-rest/external-task/fetchAndLock", json=FETCH,
                                     headers=headers).status_code,
    }


def test_deactivation_stops_remembered_credentials_on_the_next_request(client, engine, worker):
    assert calls(client, worker) == {"engine-rest": 200, "api": 200, "external-task": 200}
    IdentityService(engine).update_user(WORKER[0], active=False)
    assert calls(client, worker) == {"engine-rest": 401, "api": 401, "external-task": 401}
    IdentityService(engine).update_user(WORKER[0], active=True)
    assert calls(client, worker)["external-task"] == 200


def test_a_changed_password_stops_the_old_one_at_once(client, engine, worker):
    assert calls(client, worker)["engine-rest"] == 200
    IdentityService(engine).update_user(WORKER[0], password="Another-Relay-8830")
    assert calls(client, worker) == {"engine-rest": 401, "api": 401, "external-task": 401}
    assert calls(client, basic(WORKER[0], "Another-Relay-8830"))["external-task"] == 200


def test_remembered_credentials_skip_the_slow_hash_but_not_the_account_check(client, engine, worker, monkeypatch):
    import web.signin

    verified = []
    real = web.signin.check_password_hash
    monkeypatch.setattr(web.signin, "check_password_hash", lambda h, p: verified.append(1) or real(h, p))
    for _ in range(3):
        calls(client, worker)
    assert len(verified) == 1
    logins = [e for e in engine.audit.query()[0] if e["action"] == "login"]
    assert len(logins) == 1 and logins[0]["details"]["interface"] == "basic"


def test_failed_basic_checks_lock_the_account_with_429_and_retry_after(client, engine, clock):
    wrong = basic("frontdesk", "wrong-password")
    for _ in range(4):
        assert client.get("/engine-rest/deployment", headers=wrong).status_code == 401
    locked = client.get("/engine-rest/deployment", headers=wrong)
    assert locked.status_code == 429 and 0 < int(locked.headers["Retry-After"]) <= 900

    refused = client.get("/engine-rest/deployment", headers=FRONTDESK)  # the right password
    assert refused.status_code == 429 and refused.json["type"] == "RestException"
    assert "temporarily locked" in refused.json["message"] and refused.headers["Retry-After"]
    refused = client.get("/api/v1/tasks", headers=FRONTDESK)
    assert refused.status_code == 429 and refused.json["error"] == "too_many_attempts"
    assert refused.headers["Retry-After"]
    assert calls(client, basic("nurse"))["api"] == 200  # other accounts are not affected

    events = [e for e in engine.audit.query()[0] if e["user"] == "frontdesk"]
    failed = [e for e in events if e["action"] == "login_failed"]
    assert {e["details"]["interface"] for e in failed} == {"basic"}
    assert [e["details"].get("reason") for e in failed].count("wrong_password") == 5
    assert [e["action"] for e in events].count("locked") == 1
    assert all(e["address"] == "127.0.0.1" for e in events)

    clock.advance(minutes=15)
    assert client.get("/engine-rest/deployment", headers=FRONTDESK).status_code == 200


def test_basic_and_form_failures_add_up(client, engine):
    from tests.web.conftest import StaffClient

    wrong = basic("frontdesk", "wrong-password")
    for _ in range(3):
        client.get("/api/v1/tasks", headers=wrong)
    form = StaffClient(client.application.test_client())
    assert form.login("frontdesk", "wrong-again").status_code == 401
    assert form.login("frontdesk", "wrong-again").status_code == 429
    assert client.get("/api/v1/tasks", headers=FRONTDESK).status_code == 429


def test_failed_basic_checks_from_one_address_are_throttled(engine):
    IdentityService(engine).create_demo_staff()
    app = create_app({"TESTING": True, "LOGIN_FAILURE_LIMIT": "3 per 15 minutes"}, engine=engine)
    client = app.test_client()
    for name in ("frontdesk", "nurse", "nobody"):
        assert client.get("/engine-rest/deployment", headers=basic(name, "not-it")).status_code == 401
    blocked = client.get("/engine-rest/deployment", headers=basic("owner"))
    assert blocked.status_code == 429 and "from this address" in blocked.json["message"]
    assert int(blocked.headers["Retry-After"]) > 0


def test_unknown_names_and_wrong_passwords_answer_alike(client):
    for headers in (basic("nobody", "whatever"), basic("frontdesk", "whatever")):
        response = client.get("/engine-rest/deployment", headers=headers)
        assert response.status_code == 401 and response.json["type"] == "RestException"


def test_address_limits_can_be_switched_off_the_account_lock_stays(engine):
    IdentityService(engine).create_demo_staff()
    app = create_app({"TESTING": True, "RATELIMIT_ENABLED": False, "LOGIN_FAILURE_LIMIT": "1 per hour"},
                     engine=engine)
    client = app.test_client()
    for name in ("frontdesk", "nurse"):
        assert client.get("/engine-rest/deployment", headers=basic(name, "not-it")).status_code == 401
    assert client.get("/engine-rest/deployment", headers=basic("owner")).status_code == 200
    for _ in range(5):
        client.get("/engine-rest/deployment", headers=basic("owner", "not-it"))
    assert client.get("/engine-rest/deployment", headers=basic("owner")).status_code == 429
