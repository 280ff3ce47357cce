"""Signing in and out, CSRF on every form, sessions that end when an account changes."""

from __future__ import annotations

from engine.identity import IdentityService
from tests.web.conftest import StaffClient, text


def test_pages_need_a_login_and_return_to_where_the_user_was(make_client):
    client = make_client()
    response = client.get("/start?x=1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    login_page = text(client.get(response.headers["Location"]))
    assert "登录" in login_page and 'name="csrf_token"' in login_page
    response = client.post("/login", {"username": "frontdesk", "password": "demo", "next": "/start?x=1"})
    assert response.status_code == 302 and response.headers["Location"] == "/start?x=1"


def test_wrong_password_and_unknown_user_are_refused_with_one_message(make_client):
    client = make_client()
    for username, password in (("frontdesk", "wrong"), ("nobody", "demo"), ("", "")):
        response = client.post("/login", {"username": username, "password": password})
        assert response.status_code == 401
        assert "用户名或密码错误" in text(response)
    assert client.get("/").status_code == 302


def test_login_redirect_stays_on_this_site(make_client):
    client = make_client()
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = client.post("/login", {"username": "frontdesk", "password": "demo", "next": target})
        assert response.headers["Location"] == "/"
        client.logout()


def test_logout_is_a_post_with_a_token(make_client):
    client = make_client("frontdesk")
    assert client.get("/").status_code == 200
    assert client.client.get("/logout").status_code == 405
    assert client.post("/logout", csrf=False).status_code == 400
    assert client.get("/").status_code == 200  # still signed in
    response = client.logout()
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_every_form_needs_the_csrf_token(make_client, staff_engine):
    from tests.web.conftest import open_task, start_request

    start_request(staff_engine, "SR-CSRF")
    task = open_task(staff_engine, "SR-CSRF")
    client = make_client("complaints")
    for url in (f"/tasks/{task['id']}/claim", f"/tasks/{task['id']}/complete", "/next",
                "/start/service_request"):
        response = client.post(url, {"resolution": "已处理"}, csrf=False)
        assert response.status_code == 400, url
        assert "页面已过期" in text(response)
        assert "Traceback" not in text(response)
    assert staff_engine.get_task(task["id"])["assignee"] is None
    assert client.post("/login", {"username": "x", "password": "y", "csrf_token": "forged"},
                       csrf=False).status_code == 400


def test_deactivated_account_is_signed_out_and_cannot_sign_in(make_client, staff_engine):
    client = make_client("frontdesk")
    IdentityService(staff_engine).update_user("frontdesk", active=False)
    assert client.get("/").status_code == 302
    assert make_client().login("frontdesk").status_code == 401


def test_password_reset_ends_the_other_sessions(make_client, staff_engine):
    client = make_client("frontdesk")
    IdentityService(staff_engine).update_user("frontdesk", password="new-secret")
    assert client.get("/").status_code == 302
    assert make_client().login("frontdesk").status_code == 401
    assert make_client().login("frontdesk", "new-secret").status_code == 302


def test_header_names_the_user_and_their_groups(make_client):
    page = text(make_client("nurse").get("/"))
    assert "护士长 郑护士" in page
    assert "病区护士" in page and "护理部" in page


def test_unknown_page_is_a_friendly_404_and_json_callers_get_json(make_client):
    client = make_client("frontdesk")
    response = client.get("/no/such/page")
    assert response.status_code == 404 and "未找到" in text(response)
    response = client.get("/instances/nope/diagram.json")
    assert response.status_code == 404 and response.is_json
    anonymous = StaffClient(client.client.application.test_client())
    response = anonymous.get("/instances/nope/diagram.json")
    assert response.status_code == 401 and response.is_json


def test_an_unexpected_error_shows_a_friendly_page_not_a_traceback(staff_engine):
    from web import create_app

    app = create_app({"SECRET_KEY": "x", "TESTING": False, "PROPAGATE_EXCEPTIONS": False}, engine=staff_engine)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    body = text(response)
    assert "系统繁忙" in body and "secret internals" not in body and "Traceback" not in body


def test_the_json_apis_are_exempt_from_csrf_and_use_their_own_auth(app):
    client = app.test_client()
    body = {"businessKey": "LI-REST", "variables": {"itemName": {"value": "雨伞", "type": "String"}}}
    response = client.post("/engine-rest/process-definition/key/lost_item/start", json=body)
    assert response.status_code in (401, 403)  # their auth answers, not a CSRF error
    response = client.post("/engine-rest/process-definition/key/lost_item/start", json=body,
                           headers={"Authorization": "Basic ZnJvbnRkZXNrOmRlbW8="})  # frontdesk:demo
    assert response.status_code == 200, response.get_data(as_text=True)


def test_database_trouble_is_a_friendly_500_even_when_the_layout_cannot_render(staff_engine, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from tests.web.conftest import StaffClient
    from web import create_app

    app = create_app({"SECRET_KEY": "x", "TESTING": False, "PROPAGATE_EXCEPTIONS": False}, engine=staff_engine)
    client = StaffClient(app.test_client())
    assert client.login("frontdesk").status_code == 302

    def database_down(*args, **kwargs):
        raise OperationalError("SELECT ...", {}, Exception("database is locked"))

    monkeypatch.setattr(staff_engine, "count_tasks", database_down)
    monkeypatch.setattr(staff_engine, "list_definitions", database_down)  # the header's 新建 menu
    response = client.get("/")
    assert response.status_code == 500
    body = text(response)
    assert "系统繁忙" in body and "database is locked" not in body and "Traceback" not in body
