"""Database connection, transactions and schema migrations.

One engine command is one transaction (`Database.transaction()`); reads (`Database.reader()`)
run without one of their own on PostgreSQL. On SQLite, command
transactions begin with BEGIN IMMEDIATE so that writers queue instead of failing on a stale
snapshot; on PostgreSQL instance rows are locked with SELECT ... FOR UPDATE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def normalize_url(url: str) -> str:
    # psycopg 3 is the driver we ship; accept the plain postgresql:// spelling.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://"):]
    return url


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:":
        return Path(url[len(prefix):])
    return None


class Database:
    def __init__(self, url: str, *, echo: bool = False):
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = _sqlite_path(self.url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(self.url, echo=echo,
                                        connect_args={"check_same_thread": False, "timeout": 30})
            self._setup_sqlite(self.engine)
            self.write_engine = self.engine.execution_options(sqlite_immediate=True)
            self.late_write_engine = self.engine.execution_options(sqlite_immediate="late")
        else:
            # No pre-ping per checkout (a round trip each time): connections are recycled before
            # servers or proxies drop idle ones, and a connection that died anyway fails its
            # statement with a disconnect error, after which SQLAlchemy invalidates the pool and the
            # caller's retry gets a fresh connection.
            self.engine = create_engine(self.url, echo=echo, pool_recycle=1800, pool_size=10,
                                        max_overflow=20)
            self.write_engine = self.late_write_engine = self.engine
        # Reads on PostgreSQL run without a transaction of their own (AUTOCOMMIT): under READ
        # COMMITTED each statement sees its own snapshot either way, and no BEGIN/ROLLBACK is
        # sent — a ROLLBACK would make psycopg DEALLOCATE ALL, so prepared statements would never
        # live. On SQLite a read transaction is local and keeps one snapshot across statements.
        self.read_engine = (self.engine if self.is_sqlite
                            else self.engine.execution_options(isolation_level="AUTOCOMMIT"))
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)
        self._late_write_sessions = sessionmaker(self.late_write_engine, expire_on_commit=False)

    @staticmethod
    def _setup_sqlite(engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            # Let SQLAlchemy emit BEGIN itself (pysqlite's own transaction handling is off).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            mode = conn.get_execution_options().get("sqlite_immediate")
            conn.info["sqlite_reading"] = False
            conn.exec_driver_sql("BEGIN IMMEDIATE" if mode is True else "BEGIN")
            # a late-locking command reads in a deferred transaction (one snapshot, no lock)
            conn.info["sqlite_reading"] = mode == "late"

        @event.listens_for(engine, "before_cursor_execute")
        def _write_lock_before_first_write(conn, _cursor, statement, _parameters, _context, _executemany):
            # A late-locking command takes the write lock at its first write: its read snapshot
            # ends and BEGIN IMMEDIATE starts the transaction that writes and commits; what it
            # read before is checked by its version guard (the first write).
            if conn.info.get("sqlite_reading") and statement.lstrip()[:6].upper() != "SELECT":
                conn.info["sqlite_reading"] = False
                dbapi_connection = conn.connection.dbapi_connection
                dbapi_connection.execute("COMMIT")
                dbapi_connection.execute("BEGIN IMMEDIATE")

    @contextlib.contextmanager
    def transaction(self, *, late_write_lock: bool = False) -> Iterator[Session]:
        """A write unit of work: commits on success, rolls back on any error.

        With `late_write_lock`, on SQLite the reads and the work before the first write run
        without the write lock (BEGIN IMMEDIATE comes with the first write), so the lock is held
        for the writes alone: only for commands whose first write is guarded by an optimistic
        version check (the instance's state UPDATE), which then catches whatever changed since
        their reads. On PostgreSQL it changes nothing (rows are locked with FOR UPDATE)."""
        session = (self._late_write_sessions if late_write_lock else self._write_sessions)()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only session (no write lock taken on SQLite)."""
        session = self._read_sessions()
        try:
            yield session
        finally:
            # close() ends the transaction without expiring what was read: objects stay readable
            session.close()

    # -- schema -----------------------------------------------------------------------------

    def alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    def upgrade(self) -> None:
        """Create the schema or bring it to the newest migration."""
        cfg = self.alembic_config()
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def is_empty(self) -> bool:
        return not inspect(self.engine).has_table("users")

    def dispose(self) -> None:
        self.engine.dispose()
