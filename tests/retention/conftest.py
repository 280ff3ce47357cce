"""Fixtures of the retention tests: the hospital's processes deployed, on a frozen clock (Monday
2026-03-02 09:00 Shanghai)."""

from __future__ import annotations

import shutil

import pytest

from engine.clock import FrozenClock
from tests.conftest import make_engine
from tests.processes.support import WORKFLOWS, shanghai


@pytest.fixture(scope="session")
def retention_database(tmp_path_factory):
    """A SQLite database with workflows/ deployed, made once per run and copied for each test."""
    directory = tmp_path_factory.mktemp("retention")
    engine = make_engine(f"sqlite:///{directory / 'test.db'}", FrozenClock(shanghai(2026, 3, 2, 9, 0)), directory)
    engine.deploy_directory(WORKFLOWS, user="owner")
    engine.db.dispose()  # the WAL is checkpointed into the file
    return directory / "test.db"


@pytest.fixture
def hospital(retention_database, tmp_path, clock):
    shutil.copyfile(retention_database, tmp_path / "test.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'test.db'}", clock, tmp_path)
    yield engine
    engine.db.dispose()


@pytest.fixture
def hospital_any(any_engine):
    """The hospital's processes deployed on the `any_engine` fixture (SQLite, and PostgreSQL when it
    answers)."""
    any_engine.deploy_directory(WORKFLOWS, user="owner")
    return any_engine
