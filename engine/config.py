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
    # Seconds a script or expression may run before it is stopped.
    script_time_limit: float = 2.0
    # Tasks whose due time is closer than this are "due soon" (amber).
    due_soon_minutes: int = 60
    # Days a finished case is kept before it is anonymized, unless its process sets retention.days
    # (engine/retention.py). 3 years: the general limitation period of civil claims (民法典 §188).
    retention_days: int = 1095
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
        if os.environ.get("TIMER_MIN_INTERVAL"):
            raw = os.environ["TIMER_MIN_INTERVAL"].strip()
            if not raw.isdigit() or int(raw) < 1:
                raise ValueError(f"TIMER_MIN_INTERVAL must be a whole number of seconds (at least 1), got '{raw}'")
            values["timer_min_interval"] = int(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
