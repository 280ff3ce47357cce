"""Fires timers from the timers table with APScheduler.

The timers table is the truth. The scheduler sleeps until the earliest pending timer is due (or at
most `max_sleep` seconds, to see timers that other processes wrote), fires every due timer in its
own transaction, and catches up after downtime the same way. The firing is the engine's one fire
loop (`Timers.fire_due` in engine/timers.py, as for the CLI and the demo: a failing timer is
postponed with back-off); this module only decides when a pass runs and stops it at shutdown. The
order is fair across process definitions (engine/timer_queue.py): round-robin between the
definitions that have due timers, due order within one, so a definition with a large backlog cannot
hold back another's escalation; a timer start cycle that missed firings fires once for them all.

Several processes: on PostgreSQL each firing locks its timer row (`FOR UPDATE SKIP LOCKED`) and the
state change is one transaction, so a timer fires exactly once however many schedulers run. A due
timer that the claim skipped is being fired by another scheduler: this one plans for the timer
after it (and looks again after `retry` seconds in case the other one gives up) instead of waking
again and again while the other one fires it. On SQLite only one scheduler may run: a second one
refuses to start with a clear message.

Shutting down stops a catch-up between two firings: what is left fires at the next start.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from engine.errors import EngineError
from engine.models import Timer

log = logging.getLogger(__name__)
JOB_ID = "fire-timers"
RETENTION_JOB_ID = "retention"  # once a day at 03:15 hospital time: engine/retention.py


class SchedulerAlreadyRunning(EngineError):
    code = "scheduler_running"


class TimerScheduler:
    def __init__(self, engine, *, max_sleep: float = 5.0, batch: int = 200, sla_every: float = 60.0,
                 retry: float = 1.0):
        self.engine = engine
        self.max_sleep = max_sleep
        self.batch = batch
        self.sla_every = sla_every
        self.retry = retry
        self.worker_id = f"{os.uname().nodename}:{os.getpid()}:{id(self):x}"
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._lock_file = None
        self._run_lock = threading.Lock()
        self._stopping = threading.Event()
        self._last_sla = None
        # the engine clock just before the last claim that found nothing due
        self._claimed_at: datetime | None = None

    # -- single-scheduler guard for SQLite ---------------------------------------------------
    def _acquire_sqlite_lock(self) -> None:
        url = self.engine.db.url
        path = Path(url[len("sqlite:///"):] + ".scheduler.lock") if url.startswith("sqlite:///") else None
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w")  # noqa: SIM115 - held open while the scheduler runs (the lock)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise SchedulerAlreadyRunning(
                f"another scheduler already runs on {url}; SQLite allows only one scheduler "
                "(use PostgreSQL to run several)") from exc
        handle.write(self.worker_id)
        handle.flush()
        self._lock_file = handle

    # -- firing -------------------------------------------------------------------------------
    def run_due(self) -> int:
        """Fire every timer that is due now (fairly across definitions). Returns how many fired."""
        if not self._run_lock.acquire(blocking=False):
            return 0
        try:
            return self._fire_due()
        finally:
            self._run_lock.release()

    def _fire_due(self) -> int:
        """One pass of the engine's fire loop (engine/timers.py `Timers.fire_due`): until nothing is
        due or the scheduler shuts down; a busy instance is waited for as long as the pass runs."""
        self._claimed_at = None
        result = self.engine.timers.fire_due(stop=self._stopping, max_busy=None)
        self._claimed_at = result.idle_at
        now = self.engine.clock.now()
        if self._last_sla is None or (now - self._last_sla).total_seconds() >= self.sla_every:
            self.engine.refresh_sla()
            self._last_sla = now
        return result.fired

    def run_retention(self) -> dict | None:
        """The daily job: anonymize finished cases past retention, clear orphaned rows
        (idempotent: several schedulers may run it at the same time)."""
        from engine.retention import run_retention

        try:
            result = run_retention(self.engine, user="scheduler")
        except Exception:
            log.exception("retention job failed")
            return None
        log.info("retention: %s case(s) anonymized, %s orphaned row(s) deleted",
                 result["anonymized"], result["orphaned_rows_deleted"])
        for key, error in result["settings_errors"].items():
            log.error("retention skipped process %s: %s", key, error)
        return result

    def next_due(self) -> datetime | None:
        with self.engine.db.reader() as s:
            return s.execute(select(func.min(Timer.due_at)).where(Timer.status == "pending")).scalar()

    def _next_claimable(self, now: datetime) -> datetime | None:
        """When this scheduler has a timer to fire next: the earliest pending one, unless that one
        was already due at the last claim that found nothing, which means another scheduler holds
        it (PostgreSQL); then the earliest after that claim, or a look again after `retry`."""
        claimed_at = self._claimed_at
        pending = Timer.status == "pending"
        first = select(func.min(Timer.due_at)).where(pending).scalar_subquery()
        if claimed_at is None or self.engine.db.is_sqlite:
            with self.engine.db.reader() as s:
                return s.execute(select(first)).scalar()
        after = select(func.min(Timer.due_at)).where(pending, Timer.due_at > claimed_at).scalar_subquery()
        with self.engine.db.reader() as s:
            due, later = s.execute(select(first, after)).one()
        if due is None or due > claimed_at:
            return due
        again = now + timedelta(seconds=self.retry)
        return again if later is None else min(later, again)

    def _tick(self) -> None:
        # A tick that finds another one running (a long catch-up outlasts the interval) leaves at
        # once: the running one plans the next run when it ends.
        if not self._run_lock.acquire(blocking=False):
            return
        try:
            self._fire_due()
        except Exception:
            log.exception("scheduler tick failed")
        finally:
            self._run_lock.release()
        self._plan_next()

    def _plan_next(self) -> None:
        """Pull the next run forward to the earliest pending timer (the interval is only a ceiling,
        for timers that other processes wrote)."""
        if not self._scheduler.running or self._stopping.is_set():
            return
        now = self.engine.clock.now()
        try:
            due = self._next_claimable(now)
        except Exception:  # noqa: BLE001 - the database may be briefly unavailable; the interval retries
            due = None
        if due is None:
            return
        delay = max((due - now).total_seconds(), 0.0)
        if delay >= self.max_sleep:
            return
        run_at = datetime.now(UTC) + timedelta(seconds=delay)
        try:
            self._scheduler.modify_job(JOB_ID, next_run_time=run_at)
        except JobLookupError:
            pass

    def wake(self) -> None:
        """Run now (e.g. after a command created an earlier timer in this process)."""
        if self._scheduler.running:
            try:
                self._scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))
            except JobLookupError:
                pass

    def start(self) -> None:
        if self.engine.db.is_sqlite:
            self._acquire_sqlite_lock()
        self._stopping.clear()
        self._claimed_at = None
        # two instances: an interval tick during a long catch-up leaves at once (see _tick) instead
        # of being logged as skipped every `max_sleep` seconds
        self._scheduler.add_job(self._tick, "interval", seconds=self.max_sleep, id=JOB_ID, max_instances=2,
                                coalesce=True, misfire_grace_time=None,
                                next_run_time=datetime.now(UTC))
        self._scheduler.add_job(self.run_retention, "cron", hour=3, minute=15, timezone=self.engine.settings.tz,
                                id=RETENTION_JOB_ID, max_instances=1, coalesce=True, misfire_grace_time=3600)
        # catch-up: the first run (now) fires everything that fell due while the service was down
        self._scheduler.start()
        log.info("timer scheduler %s started", self.worker_id)

    def shutdown(self) -> None:
        self._stopping.set()  # a catch-up in progress stops after the firing at hand
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        if self._lock_file is not None:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            finally:
                self._lock_file.close()
                self._lock_file = None
