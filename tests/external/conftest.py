"""Fixtures of the external-task tests: the test diagrams deployed, a worker account, a Flask
client speaking Basic auth, and the real service on a free port for the real client packages."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from engine.identity import IdentityService
from engine.service import WorkflowEngine
from web import create_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "external"
WORKER = ("worker", "sms-relay-7431")  # follows the password policy


def deploy_external(engine: WorkflowEngine) -> None:
    engine.deploy([(p.name, p.read_bytes()) for p in sorted(FIXTURES.glob("*.bpmn"))], name="external-tests",
                  user="owner")


def start_simple(engine: WorkflowEngine, topic: str = "work", *, priority: int = 0, business_key: str | None = None,
                 **variables) -> dict:
    return engine.start("simple_external", business_key=business_key,
                        variables={"topic": topic, "priority": priority, "patientName": "张三", **variables})


def topic(name: str, lock_ms: int = 60_000, **extra) -> dict:
    return {"topicName": name, "lockDuration": lock_ms, **extra}


def basic(username: str, password: str = "demo") -> dict:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def add_worker_account(engine: WorkflowEngine) -> None:
    identity = IdentityService(engine)
    identity.create_demo_staff()  # also creates the hospital's groups, the external_worker role among them
    identity.create_user(WORKER[0], "短信与接口执行器", WORKER[1], ["external_worker"])


@pytest.fixture
def ext_engine(engine: WorkflowEngine) -> WorkflowEngine:
    deploy_external(engine)
    return engine


@pytest.fixture
def app(ext_engine: WorkflowEngine) -> Flask:
    add_worker_account(ext_engine)
    return create_app({"TESTING": True, "SECRET_KEY": "external-tests"}, engine=ext_engine)


@pytest.fixture
def rest(app: Flask):
    """A test client whose requests carry the worker account's Basic credentials."""
    client = app.test_client()
    headers = basic(*WORKER)

    class Rest:
        def get(self, url, **kw):
            return client.get(url, headers={**headers, **kw.pop("headers", {})}, **kw)

        def post(self, url, json=None, **kw):
            return client.post(url, json=json, headers={**headers, **kw.pop("headers", {})}, **kw)

        def put(self, url, json=None, **kw):
            return client.put(url, json=json, headers={**headers, **kw.pop("headers", {})}, **kw)

        def delete(self, url, **kw):
            return client.delete(url, headers={**headers, **kw.pop("headers", {})}, **kw)

        raw = client

    return Rest()


@pytest.fixture
def live_server(app: Flask):
    """The real service (werkzeug, threaded) on a free port of 127.0.0.1."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/engine-rest"
    finally:
        server.shutdown()
        thread.join(10)
