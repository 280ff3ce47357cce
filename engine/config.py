"""Settings of the engine, read from the environment with sensible defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_database_url() -> str:
    var_dir = PROJECT_ROOT / "var"
    return f"sqlite:///{var_dir / 'hospital.db'}"


@dataclass
class Settings:
    database_url: str = field(default_factory=default_database_url)
    timezone: str = "Asia/Shanghai"
    workflows_dir: Path = PROJECT_ROOT / "workflows"
    # Budget of diagram code (README "Limits of diagram code"). CPU seconds a script, Python
    # condition, FEEL or ${...} expression may use (SCRIPT_TIME_LIMIT); wall seconds before a
    # script's worker process is killed (SCRIPT_WALL_TIME_LIMIT); MiB a script's worker may grow
    # (SCRIPT_MEMORY_LIMIT_MB); iterations/list items of one FEEL evaluation
    # (EXPRESSION_MAX_ITERATIONS) and characters of one text it builds (EXPRESSION_MAX_TEXT).
    script_time_limit: float = 2.0
    script_wall_time_limit: float = 10.0
    script_memory_limit_mb: int = 512
    expression_max_iterations: int = 100_000
    expression_max_text: int = 1_000_000
    # Tasks whose due time is closer than this are "due soon" (amber).
    due_soon_minutes: int = 60
    # Days a finished case is kept before it is anonymized, unless its process sets retention.days
    # (engine/retention.py). 3 years: the general limitation period of civil claims (民法典 §188).
    retention_days: int = 1095
    # A web session ends after this long without a request (SESSION_IDLE_MINUTES).
    session_idle_minutes: int = 480
    # This many failed sign-ins of one account name within the window lock it for lockout minutes
    # (LOGIN_MAX_FAILURES, LOGIN_FAILURE_WINDOW_MINUTES, LOGIN_LOCKOUT_MINUTES).
    login_max_failures: int = 5
    login_failure_window_minutes: int = 15
    login_lockout_minutes: int = 15
    # Integration accounts that receive personal data unmasked (UNMASKED_API_USERS=notify-worker,his)
    unmasked_api_users: tuple[str, ...] = ()

    # The shortest time allowed between two firings of a repeating timer (cycle or cron), in
    # seconds (TIMER_MIN_INTERVAL): shorter ones are refused at deploy and when reached.
    timer_min_interval: int = 60

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        values: dict = {}
        if os.environ.get("DATABASE_URL"):
            values["database_url"] = os.environ["DATABASE_URL"]
        if os.environ.get("HOSPITAL_TIMEZONE"):
            values["timezone"] = os.environ["HOSPITAL_TIMEZONE"]
        if os.environ.get("WORKFLOWS_DIR"):
            values["workflows_dir"] = Path(os.environ["WORKFLOWS_DIR"])
        if os.environ.get("RETENTION_DAYS"):
            raw = os.environ["RETENTION_DAYS"].strip()
            if not raw.isdigit() or int(raw) < 1:
                raise ValueError(f"RETENTION_DAYS must be a whole number of days (at least 1), got '{raw}'")
            values["retention_days"] = int(raw)
        if os.environ.get("UNMASKED_API_USERS"):
            values["unmasked_api_users"] = tuple(
                u.strip() for u in os.environ["UNMASKED_API_USERS"].split(",") if u.strip())
        for name in ("SESSION_IDLE_MINUTES", "LOGIN_MAX_FAILURES", "LOGIN_FAILURE_WINDOW_MINUTES",
                     "LOGIN_LOCKOUT_MINUTES"):
            if os.environ.get(name):
                values[name.lower()] = _positive_int(name, os.environ[name])
        if os.environ.get("TIMER_MIN_INTERVAL"):
            raw = os.environ["TIMER_MIN_INTERVAL"].strip()
            if not raw.isdigit() or int(raw) < 1:
                raise ValueError(f"TIMER_MIN_INTERVAL must be a whole number of seconds (at least 1), got '{raw}'")
            values["timer_min_interval"] = int(raw)
        for name, kind in (("SCRIPT_TIME_LIMIT", float), ("SCRIPT_WALL_TIME_LIMIT", float),
                           ("SCRIPT_MEMORY_LIMIT_MB", int), ("EXPRESSION_MAX_ITERATIONS", int),
                           ("EXPRESSION_MAX_TEXT", int)):
            if os.environ.get(name):
                values[name.lower()] = _budget_setting(name, os.environ[name], kind)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


def _budget_setting(name: str, raw: str, kind: type) -> float:
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}, not {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be more than 0, not {raw!r}")
    return value
