"""Process tests: the hospital's four processes deployed from workflows/ on a fresh SQLite engine,
with the staff whose mobile numbers the SMS go to."""

from __future__ import annotations

import shutil

import pytest
from werkzeug.security import generate_password_hash

from engine import identity
from engine.clock import FrozenClock
from tests.conftest import make_engine
from tests.processes.support import WORKFLOWS, shanghai

PROCESS_KEYS = {"complaint", "first_contact", "escort_request", "discharge_callback"}
# username, name, groups, mobile number on file (the SMS of recipientUser / recipientGroup go there)
STAFF = [
    ("director", "客服中心主任 李主任", ["director"], "13911110001"),
    ("deputy", "客服中心副主任 何主任", ["director"], "13911110002"),
    ("escort", "陪检员 孙伟", ["escort"], "13922220003"),
]


@pytest.fixture(scope="session")
def deployed_database(tmp_path_factory):
    """A database with the schema and every file of workflows/ deployed (engine.deploy_directory),
    made once per run; each test starts from a copy of it instead of deploying again."""
    directory = tmp_path_factory.mktemp("deployed")
    engine = make_engine(f"sqlite:///{directory / 'test.db'}", FrozenClock(shanghai(2026, 3, 2, 9, 0)), directory)
    result = engine.deploy_directory(WORKFLOWS, user="owner")
    assert {d["key"] for d in result.process_definitions} == PROCESS_KEYS
    staff = identity.IdentityService(engine)
    staff.ensure_groups()
    with pytest.MonkeyPatch.context() as mp:  # a cheap hash: nobody signs in here
        mp.setattr(identity, "hash_password", lambda pw: generate_password_hash(pw, method="pbkdf2:sha256:1000"))
        for username, name, groups, phone in STAFF:
            staff.create_demo_user(username, name, groups, phone=phone)
    engine.db.dispose()  # closes the connections: the WAL is checkpointed into the file
    return directory / "test.db"


@pytest.fixture
def _deployed_copy(deployed_database, tmp_path):
    shutil.copyfile(deployed_database, tmp_path / "test.db")


@pytest.fixture
def hospital(_deployed_copy, engine):
    """The `engine` fixture (clock: Monday 2026-03-02 09:00 Shanghai) with the workflows deployed
    and the STAFF on file."""
    assert {d["key"] for d in engine.list_definitions(latest_only=True)} == PROCESS_KEYS
    return engine
