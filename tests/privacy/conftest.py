"""Fixtures of the patient-data tests: the hospital's four processes deployed on the `engine`
fixture (SQLite, clock Monday 2026-03-02 09:00 Shanghai), the demo staff, the web app, and a
discharge whose callback is due (the caller's task open)."""

from __future__ import annotations

import shutil

import pytest
from flask import Flask
from werkzeug.security import generate_password_hash

from engine import identity
from engine.clock import FrozenClock
from engine.identity import IdentityService
from engine.service import TaskQuery, WorkflowEngine
from tests.conftest import make_engine
from tests.processes.support import WORKFLOWS, advance_to, shanghai
from tests.web.conftest import StaffClient
from web import create_app

PHONE = "13612342222"
MASKED = "136****2222"
PATIENT_NO = "ZY20260211"
DISCHARGE = {"patientName": "周淑英", "patientNo": PATIENT_NO, "phone": PHONE, "department": "内科",
             "ward": "内科二病区", "diagnosisGroup": "一般", "dischargeDate": "2026-03-02", "highRisk": False,
             "elderly": False, "attendingDoctor": "吴医生"}


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    monkeypatch.setattr(identity, "hash_password",
                        lambda password: generate_password_hash(password, method="pbkdf2:sha256:1000"))


@pytest.fixture(scope="session")
def deployed_database(tmp_path_factory):
    """The schema, the demo staff and workflows/ deployed once per run; each test gets a copy."""
    directory = tmp_path_factory.mktemp("privacy")
    engine = make_engine(f"sqlite:///{directory / 'test.db'}", FrozenClock(shanghai(2026, 3, 2, 9, 0)), directory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(identity, "hash_password", lambda pw: generate_password_hash(pw, method="pbkdf2:sha256:1000"))
        IdentityService(engine).create_demo_staff()
    engine.deploy_directory(WORKFLOWS, user="owner")
    engine.db.dispose()
    return directory / "test.db"


@pytest.fixture
def _deployed_copy(deployed_database, tmp_path):
    shutil.copyfile(deployed_database, tmp_path / "test.db")


@pytest.fixture
def hospital(_deployed_copy, engine: WorkflowEngine) -> WorkflowEngine:
    return engine


@pytest.fixture
def app(hospital: WorkflowEngine) -> Flask:
    return create_app({"TESTING": True, "SECRET_KEY": "privacy-tests"}, engine=hospital)


@pytest.fixture
def make_client(app: Flask):
    def make(username: str | None = None) -> StaffClient:
        client = StaffClient(app.test_client())
        if username:
            response = client.login(username)
            assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return make


def discharge(engine: WorkflowEngine, key: str = "HF-0001", **changes) -> str:
    """A discharge registered by the ward nurse (so she may see the case she started)."""
    return engine.start("discharge_callback", business_key=key, user="nurse",
                        variables={**DISCHARGE, **changes})["id"]


def callback_due(engine: WorkflowEngine, clock, key: str = "HF-0001", **changes) -> tuple[str, dict]:
    """A discharge a week ago: the callback task is open for the callback team."""
    iid = discharge(engine, key, **changes)
    advance_to(engine, clock, shanghai(2026, 3, 9, 9, 0))
    [task] = engine.list_tasks(TaskQuery(instance_id=iid))
    assert task["element_id"] == "Activity_call" and task["candidate_groups"] == ["callback_team"]
    return iid, task


def text(response) -> str:
    return response.get_data(as_text=True)
