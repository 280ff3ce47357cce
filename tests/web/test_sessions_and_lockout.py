"""Server-side sessions (sign-out, deactivation and idleness end them whatever the browser keeps),
the temporary lock of an account after repeated failed sign-ins, throttling per address and per
account name, and the audit lines of it all."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine.identity import IdentityService
from engine.models import UserSession
from tests.web.conftest import StaffClient, text
from web import create_app


def session_cookie(client: StaffClient) -> str:
    cookie = client.client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def replay(app, cookie: str) -> StaffClient:
    """Another browser holding a copy of the cookie."""
    other = StaffClient(app.test_client())
    other.client.set_cookie("session", cookie)
    return other


def actions(engine, user: str | None = None) -> list[str]:
    events, _total = engine.audit.query()
    return [e["action"] for e in reversed(events) if user is None or e["user"] == user]


def test_logout_ends_the_session_on_the_server_a_replayed_cookie_is_refused(app, make_client, staff_engine):
    client = make_client("frontdesk")
    cookie = session_cookie(client)
    assert replay(app, cookie).get("/").status_code == 200  # the copy works while the session lives
    client.logout()
    response = replay(app, cookie).get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    with staff_engine.db.reader() as s:
        row = s.execute(select(UserSession)).scalar_one()
    assert row.revoked_at is not None and row.revoked_reason == "logout"
    assert actions(staff_engine, "frontdesk")[-2:] == ["login", "logout"]


def test_only_a_hash_of_the_session_id_is_stored(make_client, staff_engine):
    client = make_client("frontdesk")
    cookie = session_cookie(client)
    with staff_engine.db.reader() as s:
        row = s.execute(select(UserSession)).scalar_one()
    assert row.address == "127.0.0.1" and row.user_agent
    assert len(row.token_hash) == 64
    from flask.sessions import SecureCookieSessionInterface

    serializer = SecureCookieSessionInterface().get_signing_serializer(client.client.application)
    token = serializer.loads(cookie)["_user_id"]
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() and token not in row.token_hash


def test_deactivation_and_password_reset_end_every_session_even_after_reactivation(app, make_client, staff_engine):
    identity = IdentityService(staff_engine)
    office, home = make_client("caller"), make_client("caller")
    cookie = session_cookie(office)
    identity.update_user("caller", active=False)
    assert office.get("/").status_code == 302 and home.get("/").status_code == 302
    identity.update_user("caller", active=True)
    assert replay(app, cookie).get("/").status_code == 302  # revoked, not merely suspended

    again = make_client("caller")
    identity.update_user("caller", password="Hui-Fang-Ben-88")
    assert again.get("/").status_code == 302
    assert make_client().login("caller", "Hui-Fang-Ben-88").status_code == 302


def test_an_idle_session_ends_after_the_timeout_and_activity_keeps_it(make_client, staff_engine, clock):
    client = make_client("frontdesk")
    clock.advance(minutes=470)
    assert client.get("/").status_code == 200
    clock.advance(minutes=470)  # 940 min after sign-in, 470 after the last request
    assert client.get("/").status_code == 200
    clock.advance(minutes=481)
    assert client.get("/").status_code == 302


def test_last_seen_is_written_at_most_once_a_minute(make_client, staff_engine, clock):
    client = make_client("frontdesk")

    def last_seen():
        with staff_engine.db.reader() as s:
            return s.execute(select(UserSession.last_seen_at)).scalar_one()

    signed_in = last_seen()
    clock.advance(seconds=30)
    client.get("/")
    client.get("/")
    assert last_seen() == signed_in
    clock.advance(seconds=31)
    client.get("/")
    assert last_seen() == signed_in + timedelta(seconds=61)


def test_five_failures_lock_the_account_even_for_the_right_password(app, make_client, staff_engine, clock):
    for attempt in range(4):
        response = make_client().login("frontdesk", f"guess-{attempt}")
        assert response.status_code == 401 and "用户名或密码错误" in text(response)
    response = make_client().login("frontdesk", "guess-4")
    assert response.status_code == 429 and "账号已临时锁定，请 15 分钟后再试" in text(response)

    response = make_client().login("frontdesk")  # the right password
    assert response.status_code == 429 and "账号已临时锁定" in text(response)
    assert 0 < int(response.headers["Retry-After"]) <= 900
    # another worker process (another app on the same database) sees the same lock
    other_worker = StaffClient(create_app({"TESTING": True, "SECRET_KEY": "w2"}, engine=staff_engine).test_client())
    assert other_worker.login("frontdesk").status_code == 429
    assert make_client().login("nurse").status_code == 302  # other accounts are not affected

    clock.advance(minutes=15)
    assert make_client().login("frontdesk").status_code == 302
    log = actions(staff_engine, "frontdesk")
    assert log.count("login_failed") == 7 and log.count("locked") == 1 and log[-1] == "login"
    events, _ = staff_engine.audit.query()
    locked = next(e for e in events if e["action"] == "locked")
    assert locked["address"] == "127.0.0.1" and locked["details"]["interface"] == "web"


def test_a_success_resets_the_count_and_failures_outside_the_window_do_not_add_up(staff_engine, clock):
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "LOGIN_ACCOUNT_RATE_LIMIT": "20 per minute"},
                     engine=staff_engine)

    def make_client():
        return StaffClient(app.test_client())

    for _ in range(4):
        make_client().login("frontdesk", "wrong-one")
    assert make_client().login("frontdesk").status_code == 302
    for _ in range(4):
        make_client().login("frontdesk", "wrong-two")
    clock.advance(minutes=16)
    assert make_client().login("frontdesk", "wrong-three").status_code == 401
    assert make_client().login("frontdesk").status_code == 302


def test_names_that_are_no_account_lock_the_same_way(make_client):
    for _ in range(4):
        assert make_client().login("nobody", "whatever").status_code == 401
    response = make_client().login("nobody", "whatever")
    assert response.status_code == 429 and "账号已临时锁定" in text(response)


@pytest.fixture
def strict_app(staff_engine):
    return create_app({"TESTING": True, "SECRET_KEY": "strict", "LOGIN_FAILURE_LIMIT": "3 per 15 minutes",
                       "LOGIN_ACCOUNT_RATE_LIMIT": "4 per minute"}, engine=staff_engine)


def test_failures_from_one_address_are_throttled_across_account_names(strict_app, staff_engine):
    client = StaffClient(strict_app.test_client())
    for name in ("frontdesk", "nurse", "caller"):
        assert client.login(name, "not-it-at-all").status_code == 401
    response = client.login("director")  # right password, but this address is blocked for now
    assert response.status_code == 429 and "此地址登录失败次数过多" in text(response)
    assert int(response.headers["Retry-After"]) > 0
    assert "locked" in actions(staff_engine, "director")


def test_sign_in_attempts_per_account_name_are_limited(strict_app):
    client = StaffClient(strict_app.test_client())
    for _ in range(2):
        assert client.login("frontdesk").status_code == 302
        client.logout()
    assert client.login("frontdesk", "not-it-at-all").status_code == 401
    assert client.login("frontdesk").status_code == 302
    client.logout()
    response = client.login("frontdesk")
    assert response.status_code == 429 and "登录尝试过于频繁" in text(response)


def test_the_lock_message_in_english(make_client):
    for _ in range(5):
        client = make_client()
        client.get("/lang/en")
        response = client.login("frontdesk", "wrong-password")
    assert response.status_code == 429 and "temporarily locked. Try again in 15 min" in text(response)


def test_a_bad_limit_setting_is_refused_at_start(staff_engine):
    with pytest.raises(ValueError, match="LOGIN_FAILURE_LIMIT"):
        create_app({"TESTING": True, "SECRET_KEY": "x", "LOGIN_FAILURE_LIMIT": "lots"}, engine=staff_engine)


def test_behind_a_trusted_proxy_the_client_address_counts(staff_engine):
    app = create_app({"TESTING": True, "SECRET_KEY": "p", "TRUSTED_PROXIES": 1,
                      "LOGIN_FAILURE_LIMIT": "2 per 15 minutes"}, engine=staff_engine)
    client = app.test_client()

    def login(password: str, client_address: str):
        token = StaffClient(client).token()
        return client.post("/login", data={"username": "frontdesk", "password": password, "csrf_token": token},
                           headers={"X-Forwarded-For": client_address})

    assert login("wrong-password", "10.8.0.21").status_code == 401
    assert login("wrong-password", "10.8.0.21").status_code == 401
    assert login("demo", "10.8.0.21").status_code == 429  # that client is throttled ...
    assert login("demo", "10.8.0.99").status_code == 302  # ... a colleague behind the same proxy is not
    events, _ = staff_engine.audit.query()
    assert {e["address"] for e in events} == {"10.8.0.21", "10.8.0.99"}
