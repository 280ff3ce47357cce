"""Fixtures of the REST tests: the app on an engine (SQLite, or both databases through
`any_engine`), the demo staff, and helpers for HTTP Basic credentials and the test diagrams."""

from __future__ import annotations

import base64

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.identity import IdentityService
from engine.service import WorkflowEngine
from tests.conftest import fixture_bytes
from web import create_app


def basic(username: str, password: str = "demo") -> dict[str, str]:
    """What Camunda Modeler sends with every request (RestAPI.getHeaders)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Accept": "application/json"}


OWNER = basic("owner")
ADMIN = basic("admin")
FRONTDESK = basic("frontdesk")
FINANCE = basic("finance")
DIRECTOR = basic("director")


def inquiry_bpmn() -> bytes:
    return fixture_bytes("bpmn", "inquiry.bpmn")


def changed_inquiry() -> bytes:
    return inquiry_bpmn().replace("回答咨询".encode(), "答复咨询".encode())


def broken_inquiry() -> bytes:
    return inquiry_bpmn().replace(b"${not solved}", b"${not solved +}")


def make_app(engine: WorkflowEngine) -> Flask:
    IdentityService(engine).create_demo_staff()
    return create_app(engine=engine, test_config={"TESTING": True})


@pytest.fixture
def app(engine: WorkflowEngine) -> Flask:
    return make_app(engine)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def any_client(any_engine: WorkflowEngine) -> FlaskClient:
    """A client on SQLite and, when it answers, on PostgreSQL."""
    return make_app(any_engine).test_client()
