"""Shared fixtures: an engine on a fresh SQLite file (always) and on PostgreSQL (when it answers),
with a frozen clock so tests move time without sleeping."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from engine.clock import FrozenClock
from engine.config import Settings
from engine.db import Database
from engine.service import WorkflowEngine

FIXTURES = Path(__file__).parent / "fixtures"
PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


def postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            pass
        eng = create_engine(PG_URL)
        with eng.connect() as conn:
            conn.execute(text("select 1"))
        eng.dispose()
        return True
    except Exception:
        return False


PG_AVAILABLE = postgres_available()


def fixture_bytes(*parts: str) -> bytes:
    return FIXTURES.joinpath(*parts).read_bytes()


class PostgresSchema:
    """A throw-away schema on the test server: a clean database for one test."""

    def __init__(self):
        self.name = "t_" + uuid.uuid4().hex[:12]
        self.admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        sep = "&" if "?" in PG_URL else "?"
        self.url = f"{PG_URL}{sep}options=-csearch_path%3D{self.name}"

    def drop(self):
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
        self.admin.dispose()


def make_engine(url: str, clock: FrozenClock, tmp_path: Path) -> WorkflowEngine:
    settings = Settings(database_url=url, workflows_dir=tmp_path / "workflows")
    engine = WorkflowEngine(Database(url), settings, clock)
    engine.init_db()
    return engine


@pytest.fixture
def clock() -> FrozenClock:
    # Monday 2026-03-02 09:00 in Shanghai
    return FrozenClock(datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc))


@pytest.fixture
def engine(tmp_path, clock) -> WorkflowEngine:
    eng = make_engine(f"sqlite:///{tmp_path / 'test.db'}", clock, tmp_path)
    yield eng
    eng.db.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_engine(request, tmp_path, clock) -> WorkflowEngine:
    """The same test on SQLite and, when it answers, on PostgreSQL."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'test.db'}", clock, tmp_path)
        yield eng
        eng.db.dispose()
        return
    if not PG_AVAILABLE:
        pytest.skip("PostgreSQL does not answer at 127.0.0.1:5432")
    schema = PostgresSchema()
    eng = make_engine(schema.url, clock, tmp_path)
    try:
        yield eng
    finally:
        eng.db.dispose()
        schema.drop()
