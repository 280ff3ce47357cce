"""Fires timers from the timers table with APScheduler.

The timers table is the truth. The scheduler sleeps until the earliest pending timer is due (or at
most `max_sleep` seconds, to see timers that other processes wrote), fires every due timer in its
own transaction, in due order, and catches up after downtime the same way.

Several processes: on PostgreSQL each firing locks its timer row (`FOR UPDATE SKIP LOCKED`) and the
state change is one transaction, so a timer fires exactly once however many schedulers run. On
SQLite only one scheduler may run: a second one refuses to start with a clear message.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from engine.errors import EngineError
from engine.models import Timer

log = logging.getLogger(__name__)


class SchedulerAlreadyRunning(EngineError):
    code = "scheduler_running"


class TimerScheduler:
    def __init__(self, engine, *, max_sleep: float = 5.0, batch: int = 200, sla_every: float = 60.0):
        self.engine = engine
        self.max_sleep = max_sleep
        self.batch = batch
        self.sla_every = sla_every
        self.worker_id = f"{os.uname().nodename}:{os.getpid()}:{id(self):x}"
        self._scheduler = BackgroundScheduler(timezone=timezone.utc)
        self._lock_file = None
        self._run_lock = threading.Lock()
        self._last_sla = None

    # -- single-scheduler guard for SQLite ---------------------------------------------------
    def _acquire_sqlite_lock(self) -> None:
        url = self.engine.db.url
        path = Path(url[len("sqlite:///"):] + ".scheduler.lock") if url.startswith("sqlite:///") else None
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w")
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
        """Fire every timer that is due now, in due order. Returns how many fired."""
        if not self._run_lock.acquire(blocking=False):
            return 0
        fired = 0
        try:
            while True:
                ids = self.engine.due_timers(self.batch)
                if not ids:
                    break
                progressed = 0
                for timer_id in ids:
                    try:
                        if self.engine.fire_timer(timer_id, worker=self.worker_id):
                            fired += 1
                            progressed += 1
                    except Exception as exc:  # a broken instance must not stop the others
                        log.error("timer %s could not fire: %s", timer_id, exc)
                        self._record_failure(timer_id, exc)
                if progressed == 0:
                    break
            now = self.engine.clock.now()
            if self._last_sla is None or (now - self._last_sla).total_seconds() >= self.sla_every:
                self.engine.refresh_sla()
                self._last_sla = now
        finally:
            self._run_lock.release()
        return fired

    def _record_failure(self, timer_id: str, exc: Exception) -> None:
        with self.engine.db.transaction() as s:
            timer = s.get(Timer, timer_id)
            if timer is None:
                return
            timer.attempts += 1
            timer.last_error = str(exc)[:2000]
            # back off: retry after 1, 2, 4 ... minutes, at most an hour
            delay = min(60 * 2 ** min(timer.attempts - 1, 6), 3600)
            timer.due_at = self.engine.clock.now() + timedelta(seconds=delay)

    def next_due(self) -> datetime | None:
        with self.engine.db.reader() as s:
            return s.execute(select(func.min(Timer.due_at)).where(Timer.status == "pending")).scalar()

    def _tick(self) -> None:
        try:
            self.run_due()
        except Exception:
            log.exception("scheduler tick failed")
        finally:
            self._plan_next()

    def _plan_next(self) -> None:
        if not self._scheduler.running:
            return
        now = self.engine.clock.now()
        wake = now + timedelta(seconds=self.max_sleep)
        try:
            due = self.next_due()
        except Exception:
            due = None
        if due is not None and due < wake:
            wake = max(due, now)
        delay = max((wake - now).total_seconds(), 0.0)
        run_at = datetime.now(timezone.utc) + timedelta(seconds=delay)
        self._scheduler.add_job(self._tick, "date", run_date=run_at, id="fire-timers",
                                replace_existing=True, misfire_grace_time=None)

    def wake(self) -> None:
        """Re-plan now (e.g. after a command created an earlier timer in this process)."""
        if self._scheduler.running:
            self._scheduler.add_job(self._tick, "date", run_date=datetime.now(timezone.utc),
                                    id="fire-timers", replace_existing=True, misfire_grace_time=None)

    def start(self) -> None:
        if self.engine.db.is_sqlite:
            self._acquire_sqlite_lock()
        self._scheduler.start()
        # catch-up: everything that fell due while the service was down fires first, in due order
        self.wake()
        log.info("timer scheduler %s started", self.worker_id)

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        if self._lock_file is not None:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            finally:
                self._lock_file.close()
                self._lock_file = None
