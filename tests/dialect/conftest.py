"""Helpers for the Camunda 7 dialect tests: deploy fixtures saved as Camunda Modeler saves them
(tests/fixtures/dialect) and look at what the engine made of them."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.clock import FrozenClock
from engine.config import Settings
from engine.db import Database
from engine.service import TaskQuery, WorkflowEngine
from tests.conftest import PG_AVAILABLE, PostgresSchema, make_engine

DIALECT = Path(__file__).parent.parent / "fixtures" / "dialect"


# -- engines: SQLite from a migrated template (a copy instead of running the migrations per test) --

@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dialect_template")
    template = make_engine(f"sqlite:///{folder / 'template.db'}", FrozenClock(datetime(2026, 1, 1, tzinfo=UTC)),
                           folder)
    with template.db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    template.db.dispose()
    return folder / "template.db"


def sqlite_engine(tmp_path: Path, clock, template: Path) -> WorkflowEngine:
    target = tmp_path / "test.db"
    shutil.copyfile(template, target)
    url = f"sqlite:///{target}"
    eng = WorkflowEngine(Database(url), Settings(database_url=url, workflows_dir=tmp_path / "workflows"), clock)
    # No live-workflow cache: every command loads the instance from its serialized state, so each
    # test also proves the dialect's specs and their task data survive a restart.
    eng._workflows.size = 0
    return eng


@pytest.fixture
def engine(tmp_path, clock, migrated_sqlite) -> WorkflowEngine:
    eng = sqlite_engine(tmp_path, clock, migrated_sqlite)
    yield eng
    eng.db.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_engine(request, tmp_path, clock, migrated_sqlite) -> WorkflowEngine:
    """The same test on SQLite and, when it answers, on PostgreSQL."""
    if request.param == "sqlite":
        eng = sqlite_engine(tmp_path, clock, migrated_sqlite)
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


# -- fixtures and looks ----------------------------------------------------------------------


def fixture(name: str) -> bytes:
    return (DIALECT / name).read_bytes()


def deploy(engine, *names: str, replace: dict[str, tuple[bytes, bytes]] | None = None, **kwargs):
    files = []
    for name in names:
        content = fixture(name)
        for old, new in (replace or {}).get(name, []):
            assert old in content, f"{old!r} is not in {name}"
            content = content.replace(old, new)
        files.append((name, content))
    return engine.deploy(files, name=kwargs.pop("name", "dialect"), **kwargs)


def open_tasks(engine, instance_id: str | None = None, **filters) -> list[dict]:
    return engine.list_tasks(TaskQuery(instance_id=instance_id, limit=200, sort="created", **filters))


def task_at(engine, instance_id: str, element_id: str) -> dict:
    found = [t for t in open_tasks(engine, instance_id) if t["element_id"] == element_id]
    assert len(found) == 1, (element_id, [t["element_id"] for t in open_tasks(engine, instance_id)])
    return found[0]


def elements(engine, instance_id: str) -> list[str]:
    """The open human tasks of an instance, by element id, sorted."""
    return sorted(t["element_id"] for t in open_tasks(engine, instance_id))


def variables(engine, instance_id: str) -> dict:
    return {k: v["value"] for k, v in engine.get_variables(instance_id).items()}


def task_data(engine, task_id: str) -> dict:
    """What the engine's task holds (its own variables included): white-box, for checks the
    service does not expose."""
    import uuid

    task = engine.get_task(task_id)
    with engine.db.reader() as s:
        loaded = engine._load(s, task["instance_id"], for_update=False)
        return dict(loaded.workflow.get_task_from_id(uuid.UUID(task_id)).data)
