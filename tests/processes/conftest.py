"""Process tests: the hospital's four processes deployed from workflows/ on a fresh SQLite engine."""

from __future__ import annotations

import shutil

import pytest

from engine.clock import FrozenClock
from tests.conftest import make_engine
from tests.processes.support import WORKFLOWS, shanghai

PROCESS_KEYS = {"complaint", "first_contact", "escort_request", "discharge_callback"}


@pytest.fixture(scope="session")
def deployed_database(tmp_path_factory):
    """A database with the schema and every file of workflows/ deployed (engine.deploy_directory),
    made once per run; each test starts from a copy of it instead of deploying again."""
    directory = tmp_path_factory.mktemp("deployed")
    engine = make_engine(f"sqlite:///{directory / 'test.db'}", FrozenClock(shanghai(2026, 3, 2, 9, 0)), directory)
    result = engine.deploy_directory(WORKFLOWS, user="owner")
    assert {d["key"] for d in result.process_definitions} == PROCESS_KEYS
    engine.db.dispose()  # closes the connections: the WAL is checkpointed into the file
    return directory / "test.db"


@pytest.fixture
def _deployed_copy(deployed_database, tmp_path):
    shutil.copyfile(deployed_database, tmp_path / "test.db")


@pytest.fixture
def hospital(_deployed_copy, engine):
    """The `engine` fixture (clock: Monday 2026-03-02 09:00 Shanghai) with the workflows deployed."""
    assert {d["key"] for d in engine.list_definitions(latest_only=True)} == PROCESS_KEYS
    return engine
