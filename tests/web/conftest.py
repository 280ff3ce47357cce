"""Fixtures of the web tests: the app on the `engine` fixture (temp SQLite, frozen clock), the
demo staff, the test diagrams deployed, and a client that signs in and sends CSRF tokens."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from engine import identity
from engine.identity import IdentityService
from engine.service import TaskQuery, WorkflowEngine
from web import create_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WEB_FIXTURES = FIXTURES / "web"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def deploy_web_fixtures(engine: WorkflowEngine) -> None:
    files = [(p.name, p.read_bytes()) for p in sorted(WEB_FIXTURES.iterdir()) if p.suffix in (".bpmn", ".dmn")]
    files.append(("inquiry.bpmn", (FIXTURES / "bpmn" / "inquiry.bpmn").read_bytes()))
    engine.deploy(files, name="web-tests", user="owner")


def start_request(engine: WorkflowEngine, business_key: str = "SR-001", *, urgent: bool = False,
                  patient: str = "张三", patient_no: str = "P0001", category: str = "billing",
                  user: str = "frontdesk") -> dict:
    return engine.start("service_request", business_key=business_key, user=user,
                        variables={"patientName": patient, "patientNo": patient_no, "category": category,
                                   "urgent": urgent, "description": "咨询检查费用"})


def open_task(engine: WorkflowEngine, business_key: str) -> dict:
    tasks = engine.list_tasks(TaskQuery(business_key=business_key))
    assert len(tasks) == 1, tasks
    return tasks[0]


class StaffClient:
    """A Flask test client that signs in as a staff member and sends the page's CSRF token."""

    def __init__(self, client: FlaskClient):
        self.client = client
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            html = self.client.get("/login").get_data(as_text=True)
            if "csrf_token" not in html:
                html = self.client.get("/").get_data(as_text=True)
            self._token = TOKEN.search(html).group(1)
        return self._token

    def login(self, username: str, password: str = "demo"):
        self._token = None
        response = self.post("/login", {"username": username, "password": password})
        self._token = None  # the session (and its token) is new after signing in
        return response

    def logout(self):
        response = self.post("/logout")
        self._token = None
        return response

    def get(self, url: str, **kwargs):
        return self.client.get(url, **kwargs)

    def post(self, url: str, data: dict | None = None, *, follow: bool = False, csrf: bool = True):
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.token())
        return self.client.post(url, data=form, follow_redirects=follow)


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Demo and test accounts get a cheap hash: the suite signs in a hundred times, and the
    production hash (scrypt) is deliberately slow. Verification reads the method from the hash."""
    monkeypatch.setattr(identity, "hash_password",
                        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))


@pytest.fixture
def staff_engine(engine: WorkflowEngine) -> WorkflowEngine:
    IdentityService(engine).create_demo_staff()
    deploy_web_fixtures(engine)
    return engine


@pytest.fixture
def app(staff_engine: WorkflowEngine) -> Flask:
    return create_app({"TESTING": True, "SECRET_KEY": "web-tests"}, engine=staff_engine)


@pytest.fixture
def make_client(app: Flask):
    def make(username: str | None = None) -> StaffClient:
        client = StaffClient(app.test_client())
        if username:
            response = client.login(username)
            assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return make


def add_colleague(engine: WorkflowEngine, username: str = "complaints2", display_name: str = "投诉专员 何敏",
                  groups: tuple[str, ...] = ("complaint_office",)) -> None:
    IdentityService(engine).create_demo_user(username, display_name, list(groups))  # password "demo"


def text(response) -> str:
    return response.get_data(as_text=True)
