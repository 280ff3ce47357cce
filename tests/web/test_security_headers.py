"""Browser security headers on every kind of response (pages, JSON APIs, static files, errors), the
deployed XML handed out only as inert downloads, the templates free of inline script, and the
HTTPS settings (SESSION_COOKIE_SECURE: Secure cookies and HSTS; FORCE_HTTPS: redirect)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from tests.web.conftest import FIXTURES
from web import create_app

TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "templates"
BASIC = {"Authorization": "Basic " + base64.b64encode(b"owner:demo").decode()}


def directives(response) -> dict[str, str]:
    policy = response.headers.get("Content-Security-Policy")
    assert policy, f"{response.request.path} has no Content-Security-Policy"
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else ""
            for part in (p.strip() for p in policy.split(";")) if part}


def assert_page_headers(response) -> None:
    csp = directives(response)
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no hosts
    assert csp["object-src"] == "'none'" and csp["base-uri"] == "'self'" and csp["form-action"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and csp["img-src"] == "'self' data:"
    assert "unsafe" not in csp["style-src"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "camera=()" in response.headers["Permissions-Policy"]
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP, secure cookies off


def assert_inert_download(response, name: str, content: bytes, mimetype: str = "application/xml") -> None:
    assert response.status_code == 200
    assert response.data == content  # the file as deployed
    assert response.mimetype == mimetype
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and f"filename*=UTF-8''{name}" in disposition
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    csp = directives(response)
    assert csp["default-src"] == "'none'" and "sandbox" in csp and csp["frame-ancestors"] == "'none'"


def test_pages_json_static_files_and_errors_carry_the_headers(make_client):
    anonymous = make_client()
    login = anonymous.get("/login")
    assert login.status_code == 200
    assert_page_headers(login)
    admin = make_client("admin")
    for url in ("/", "/start", "/start/service_request", "/processes/", "/processes/inquiry",
                "/processes/deploy", "/admin/users", "/admin/incidents"):
        response = admin.get(url)
        assert response.status_code == 200, url
        assert_page_headers(response)
    assert_page_headers(admin.get("/processes/no-such-process"))  # the error page
    for url in ("/static/app.js", "/static/app.css", "/static/vendor/bpmn-js/bpmn-navigated-viewer.production.min.js"):
        response = admin.get(url)
        assert response.status_code == 200, url
        assert_page_headers(response)
        response.close()
    # the JSON APIs: with a session, with HTTP Basic, and their errors
    assert_page_headers(admin.get("/api/v1/tasks"))
    assert_page_headers(admin.get("/start/service_request/diagram.json"))
    assert_page_headers(anonymous.client.get("/engine-rest/task", headers=BASIC))
    refused = anonymous.client.get("/api/v1/tasks", headers={"X-Requested-With": "fetch"})
    assert refused.status_code == 401
    assert_page_headers(refused)


def test_only_the_decision_page_allows_style_attributes_which_dmn_js_writes(make_client):
    owner = make_client("owner")
    decision = owner.get("/processes/decisions/service_tier")
    assert decision.status_code == 200
    csp = directives(decision)
    assert csp["style-src-attr"] == "'unsafe-inline'" and csp["script-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
    assert "style-src-attr" not in directives(owner.get("/processes/inquiry"))


def test_deployed_xml_is_only_ever_an_inert_download(make_client, staff_engine):
    inquiry = (FIXTURES / "bpmn" / "inquiry.bpmn").read_bytes()
    tier = (FIXTURES / "web" / "service_tier.dmn").read_bytes()
    process = staff_engine.list_definitions("inquiry")[0]
    decision = staff_engine.list_decisions("service_tier")[0]
    nurse = make_client("nurse")
    assert_inert_download(nurse.get(f"/api/v1/definitions/{process['id']}/xml"), "inquiry.bpmn", inquiry)
    assert_inert_download(nurse.get(f"/api/v1/definitions/{decision['id']}/xml"), "service_tier.dmn", tier)
    assert_inert_download(nurse.client.get(f"/api/v1/definitions/{process['id']}/xml", headers=BASIC),
                          "inquiry.bpmn", inquiry)
    owner = make_client("owner")
    for query in ("", "?download=1"):
        assert_inert_download(owner.get(f"/processes/definitions/{process['id']}/xml{query}"),
                              "inquiry.bpmn", inquiry)
    assert_inert_download(owner.get(f"/processes/definitions/{decision['id']}/xml"), "service_tier.dmn", tier)
    deployment = staff_engine.get_deployment(process["deployment_id"])
    by_name = {r["name"]: r["id"] for r in deployment["resources"]}
    data = owner.client.get(f"/engine-rest/deployment/{deployment['id']}/resources/{by_name['inquiry.bpmn']}/data",
                            headers=BASIC)
    assert_inert_download(data, "inquiry.bpmn", inquiry)
    # a file name with markup and non-ASCII characters: quoted, and a plain fallback name
    result = staff_engine.deploy([("咨询 <b>.bpmn", inquiry)], name="odd-name", user="owner", changed_only=False)
    resources = {r["name"]: r["id"] for r in staff_engine.get_deployment(result.deployment_id)["resources"]}
    odd = owner.client.get(f"/engine-rest/deployment/{result.deployment_id}/resources/"
                           f"{resources['咨询 <b>.bpmn']}/data", headers=BASIC)
    assert_inert_download(odd, "%E5%92%A8%E8%AF%A2%20%3Cb%3E.bpmn", inquiry)
    assert 'filename="b_.bpmn"' in odd.headers["Content-Disposition"]
    # the XML inside JSON stays JSON
    json_xml = owner.client.get(f"/engine-rest/process-definition/{process['id']}/xml", headers=BASIC)
    assert json_xml.mimetype == "application/json" and json_xml.json["bpmn20Xml"] == inquiry.decode()
    assert_page_headers(json_xml)


def test_templates_have_no_inline_script_handlers_or_styles():
    """The policy refuses them; a page with one would silently lose that behaviour."""
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.IGNORECASE)
    handler = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        source = path.read_text()
        patterns = (inline_script, handler, re.compile(r"javascript:", re.IGNORECASE),
                    re.compile(r"\sstyle\s*=", re.IGNORECASE))
        for pattern in patterns:
            found += [f"{path.relative_to(TEMPLATES)}: {m.group(0).strip()}" for m in pattern.finditer(source)]
    assert not found, found


@pytest.fixture
def secure_app(staff_engine, monkeypatch):
    def make(**env: str):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return create_app({"TESTING": True, "SECRET_KEY": "web-tests"}, engine=staff_engine)

    return make


def login_cookie(client, base_url: str) -> str:
    page = client.get("/login", base_url=base_url).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": "nurse", "password": "demo", "csrf_token": token},
                           base_url=base_url, headers={"Referer": f"{base_url}/login"})
    assert response.status_code == 302, response.get_data(as_text=True)
    return "; ".join(response.headers.getlist("Set-Cookie"))


def test_cookies_are_not_secure_and_nothing_redirects_by_default(secure_app, monkeypatch):
    monkeypatch.delenv("SESSION_COOKIE_SECURE", raising=False)
    monkeypatch.delenv("FORCE_HTTPS", raising=False)
    client = secure_app().test_client()
    cookie = login_cookie(client, "http://localhost")
    assert "session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    for response in (client.get("/"), client.get("/", headers={"X-Forwarded-Proto": "https"}),
                     client.get("/", base_url="https://localhost")):
        assert response.status_code == 200 and "Strict-Transport-Security" not in response.headers


def test_session_cookie_secure_marks_cookies_secure_and_turns_hsts_on(secure_app, monkeypatch):
    monkeypatch.delenv("FORCE_HTTPS", raising=False)
    app = secure_app(SESSION_COOKIE_SECURE="1")
    client = app.test_client()
    cookie = login_cookie(client, "https://localhost")
    assert "session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    assert app.config["REMEMBER_COOKIE_SECURE"] is True
    over_https = client.get("/", base_url="https://localhost")
    assert over_https.status_code == 200  # signed in: the Secure cookie goes back over HTTPS
    assert over_https.headers["Strict-Transport-Security"] == "max-age=31536000"
    # behind the proxy: the request reached the app over HTTP, the browser used HTTPS
    proxied = app.test_client().get("/login", headers={"X-Forwarded-Proto": "https"})
    assert proxied.headers["Strict-Transport-Security"] == "max-age=31536000"
    # HSTS is never sent over plain HTTP (browsers ignore it there), and nothing redirects
    plain = app.test_client().get("/login")
    assert plain.status_code == 200 and "Strict-Transport-Security" not in plain.headers


def test_force_https_redirects_plain_http(secure_app):
    client = secure_app(FORCE_HTTPS="1").test_client()
    plain = client.get("/login?next=/")
    assert plain.status_code == 302 and plain.headers["Location"] == "https://localhost/login?next=/"
    assert client.get("/login", base_url="https://localhost").status_code == 200
    assert client.get("/login", headers={"X-Forwarded-Proto": "https"}).status_code == 200

