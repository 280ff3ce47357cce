"""`hospital-workflow-serve`: the service as `make run` and production run it.

    hospital-workflow-serve [--host H] [--port P] [--workers N] [--threads T] [--no-scheduler] [--no-worker]

One command, one process tree, the same on SQLite (`make run`) and PostgreSQL (settings only)::

    hospital-workflow-serve          this process: the timer scheduler (APScheduler) and the SMS
    │                                worker (topic "notify"), each a thread: once per service
    └── gunicorn arbiter             a child started by fork+exec, in a session of its own
        ├── web worker 1 (gthread)   the Flask app, loaded after the fork, with its own script workers
        └── web worker 2 …           WEB_WORKERS of them (default 2), WEB_THREADS threads each

Why the scheduler and the SMS worker live here and not in gunicorn's arbiter (``when_ready``): the
arbiter forks web workers at the start and again whenever one dies or is recycled; a fork while
scheduler or database threads hold a lock copies the held lock into the new worker, which then
hangs on it, and open database connections would be shared by both processes. gunicorn's arbiter
also reaps every child with ``waitpid(-1)``, so it cannot look after a process of ours. Here
gunicorn is a plain child that inherits nothing (exec), and this process owns the rest:

* the service ends when gunicorn ends (its exit code tells why);
* SIGTERM or Ctrl+C stop gunicorn gracefully (requests in flight finish), then the SMS worker and
  the scheduler (a catch-up stops between two firings); SIGHUP reloads the web workers;
* if this process is killed outright, the kernel sends gunicorn SIGTERM (``PR_SET_PDEATHSIG``,
  set in its ``on_starting`` hook), so no web worker outlives the service;
* a timer that creates an SMS wakes the SMS worker at once (same process).

Several machines on one PostgreSQL database run this same command each: timer rows are claimed
with ``FOR UPDATE SKIP LOCKED`` and SMS tasks with fetch-and-lock, so each fires and goes out once.
On SQLite one service per database file (a second scheduler refuses to start); its web workers
share the file in WAL mode and every command takes the write lock with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

# gunicorn's settings module; the app factory each web worker calls after the fork
GUNICORN_CONFIG = "python:web.gunicorn_conf"
APP = "web:create_app()"
# set for gunicorn: the pid of the serve process it must not outlive
PARENT_ENV = "HOSPITAL_SERVE_PARENT"
# seconds gunicorn gets to stop before it is killed (its graceful_timeout is 20)
STOP_GRACE = 30.0


class SettingError(ValueError):
    """A setting of the serve command that cannot be used (named in the message)."""


def _whole(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingError(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise SettingError(f"{name} must be between {low} and {high}, not {value}")
    return value


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 2
    threads: int = 4

    @property
    def bind_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self) -> str:
        return f"http://{self.bind_host}:{self.port}"

    @classmethod
    def from_env(cls, environ=None) -> ServeSettings:
        env = os.environ if environ is None else environ
        host = (env.get("HOST") or cls.host).strip()
        if not host or any(c.isspace() for c in host):
            raise SettingError(f"HOST must be an address or host name, not {env.get('HOST')!r}")
        return cls(host=host,
                   port=_whole("PORT", env["PORT"], 1, 65535) if env.get("PORT") else cls.port,
                   workers=_whole("WEB_WORKERS", env["WEB_WORKERS"], 1, 64) if env.get("WEB_WORKERS")
                   else cls.workers,
                   threads=_whole("WEB_THREADS", env["WEB_THREADS"], 1, 64) if env.get("WEB_THREADS")
                   else cls.threads)


def configure_logging() -> None:
    """Log format and levels of the command line, and the patient-data filter on the root handlers
    and on gunicorn's loggers (request lines without query values, phone and ID numbers masked).
    Idempotent: the serve process, gunicorn's arbiter and each web worker call it."""
    from engine.privacy import install_log_filters

    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("spiff", "apscheduler", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    install_log_filters()


def follow_parent() -> None:
    """In gunicorn's arbiter started by the serve command: end with it (SIGTERM when it dies)."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return url.split("@")[-1]


class Background:
    """The work that runs once per service beside the web workers: the timer scheduler and the SMS
    worker (threads of the serve process), and the script workers that timer firings use."""

    def __init__(self, engine, *, scheduler: bool = True, notify: bool = True):
        self.engine = engine
        self.want_scheduler, self.want_notify = scheduler, notify
        self.scheduler = None
        self.notify = None

    def start(self) -> None:
        from engine import sandbox_worker

        if self.want_scheduler:
            from engine.scheduler import TimerScheduler

            scheduler = TimerScheduler(self.engine)
            scheduler.start()  # on SQLite refuses when another service runs on the same file
            self.scheduler = scheduler
        if self.want_notify:
            from engine.notify import start_worker_thread

            self.notify = start_worker_thread(self.engine)
        threading.Thread(target=sandbox_worker.prestart, name="sandbox-prestart", daemon=True).start()

    def stop(self) -> None:
        from engine import sandbox_worker

        if self.notify is not None:
            self.notify.stop()
            self.notify = None
        if self.scheduler is not None:
            self.scheduler.shutdown()
            self.scheduler = None
        sandbox_worker.shutdown()


def _apply_arguments(args: argparse.Namespace) -> None:
    """Command-line options win over the environment; gunicorn reads the result from it."""
    for name, value in (("DATABASE_URL", args.database_url), ("HOST", args.host), ("PORT", args.port),
                        ("WEB_WORKERS", args.workers), ("WEB_THREADS", args.threads)):
        if value is not None:
            os.environ[name] = str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hospital-workflow-serve",
        description="The web service (gunicorn) with the timer scheduler and the SMS worker beside it.")
    parser.add_argument("--database-url", help="overrides DATABASE_URL")
    parser.add_argument("--host", help="address to listen on (HOST, default 127.0.0.1)")
    parser.add_argument("--port", help="port (PORT, default 5000)")
    parser.add_argument("--workers", help="web worker processes (WEB_WORKERS, default 2)")
    parser.add_argument("--threads", help="threads per web worker (WEB_THREADS, default 4)")
    parser.add_argument("--no-scheduler", action="store_true",
                        help="no timer scheduler here (another service or `hospital-workflow scheduler` fires them)")
    parser.add_argument("--no-worker", action="store_true",
                        help="no SMS worker here (`hospital-workflow notify-worker` runs elsewhere)")
    return parser


def serve(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from engine.config import Settings
    from engine.errors import EngineError
    from engine.service import WorkflowEngine

    _apply_arguments(args)
    try:
        settings = ServeSettings.from_env()
        engine_settings = Settings.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = engine_settings.database_url
    if url.startswith("sqlite") and (url in ("sqlite://", "sqlite:///:memory:") or ":memory:" in url):
        print("error: an in-memory SQLite database cannot be shared by the web workers; "
              "set DATABASE_URL to a file (sqlite:///var/hospital.db) or PostgreSQL", file=sys.stderr)
        return 2
    engine = WorkflowEngine.from_settings(engine_settings)
    try:
        empty = engine.db.is_empty()
    except SQLAlchemyError as exc:
        print(f"error: cannot reach the database {_safe_url(engine.db.url)}: {str(exc.orig or exc).strip()}",
              file=sys.stderr)
        engine.db.dispose()
        return 2
    if empty:
        print(f"error: the database {_safe_url(engine.db.url)} has no schema yet: "
              "run `hospital-workflow setup` first (make run does)", file=sys.stderr)
        engine.db.dispose()
        return 2
    if not os.environ.get("SECRET_KEY") and not engine.db.is_sqlite:
        # every web worker must sign sessions with the same key; a key made per start signs
        # everybody out at a restart
        os.environ["SECRET_KEY"] = secrets.token_hex(32)
        log.warning("SECRET_KEY is not set: a key for this run only (set it so sign-ins survive a restart)")

    background = Background(engine, scheduler=not args.no_scheduler, notify=not args.no_worker)
    try:
        background.start()
    except EngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        background.stop()
        engine.db.dispose()
        return 2

    stop = threading.Event()
    web: subprocess.Popen | None = None

    def _stop(*_args) -> None:
        stop.set()

    def _reload(*_args) -> None:
        if web is not None and web.poll() is None:
            web.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _reload)
    env = dict(os.environ, **{PARENT_ENV: str(os.getpid())})
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG, APP],
                           env=env, start_new_session=True)
    print(f"service on {settings.url}: {settings.workers} web worker(s) × {settings.threads} thread(s), "
          f"scheduler {'on' if background.scheduler else 'off'}, SMS worker {'on' if background.notify else 'off'}, "
          f"database {_safe_url(engine.db.url)}", flush=True)
    code = 0
    try:
        while not stop.is_set():
            try:
                returncode = web.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            log.error("gunicorn ended (exit code %s): the service stops", returncode)
            code = 1 if returncode else 0
            break
    finally:
        _stop_gunicorn(web)
        background.stop()
        engine.db.dispose()
    return code


def _stop_gunicorn(web: subprocess.Popen) -> None:
    if web.poll() is not None:
        return  # it ended by itself; its workers notice their parent is gone and end too
    web.terminate()  # graceful: requests in flight finish, then the workers and the arbiter end
    try:
        web.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        log.error("gunicorn did not stop within %s s: killed with its workers", STOP_GRACE)
        try:
            os.killpg(web.pid, signal.SIGKILL)  # its own session: the arbiter and its workers
        except ProcessLookupError:
            pass
        web.wait()


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    return serve(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
