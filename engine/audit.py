"""The audit log: who read which case, task, variables or export, and the security events
(sign-ins, failed sign-ins, lockouts, masked values revealed, erasures), when and from where.

Append-only and separate from the process history (`history`), so it outlives the cases it names
and an erased case still shows who saw it. Writing is one INSERT in its own short transaction: an
audit line is kept even when the request that caused it fails afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from engine.clock import Clock
from engine.db import Database
from engine.models import AuditEvent

MAX_DETAIL_TEXT = 500


@dataclass(frozen=True)
class AuditQuery:
    user: str | None = None
    action: str | None = None
    patient: str | None = None
    instance_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    offset: int = 0
    limit: int = 100


class AuditLog:
    def __init__(self, db: Database, clock: Clock | None = None):
        self.db = db
        self.clock = clock or Clock()

    def record(self, action: str, *, user: str | None, address: str | None = None,
               resource_type: str | None = None, resource_id: str | None = None,
               instance_id: str | None = None, patient: str | None = None,
               details: Mapping[str, Any] | None = None) -> None:
        row = {"at": self.clock.now(), "user": _cut(user, 64), "address": _cut(address, 64),
               "action": action[:32], "resource_type": _cut(resource_type, 32),
               "resource_id": _cut(resource_id, 64), "instance_id": _cut(instance_id, 36),
               "patient": _cut(patient, 64), "details": _short(dict(details or {}))}
        with self.db.engine.begin() as conn:
            conn.execute(insert(AuditEvent), row)

    def query(self, q: AuditQuery | None = None) -> tuple[list[dict], int]:
        """Newest first, with the total count of matching events."""
        from sqlalchemy import func

        q = q or AuditQuery()
        stmt = select(AuditEvent)
        for column, value in ((AuditEvent.user, q.user), (AuditEvent.action, q.action),
                              (AuditEvent.patient, q.patient), (AuditEvent.instance_id, q.instance_id)):
            if value:
                stmt = stmt.where(column == value)
        if q.since is not None:
            stmt = stmt.where(AuditEvent.at >= q.since)
        if q.until is not None:
            stmt = stmt.where(AuditEvent.at < q.until)
        with self.db.reader() as s:
            total = s.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
            rows = s.execute(stmt.order_by(AuditEvent.id.desc()).offset(q.offset).limit(q.limit)).scalars()
            return [{"id": r.id, "at": r.at, "user": r.user, "address": r.address, "action": r.action,
                     "resource_type": r.resource_type, "resource_id": r.resource_id,
                     "instance_id": r.instance_id, "patient": r.patient, "details": r.details or {}}
                    for r in rows], total


def _cut(value: str | None, size: int) -> str | None:
    return None if value is None else str(value)[:size]


def _short(details: dict) -> dict:
    return {str(k)[:64]: (v[:MAX_DETAIL_TEXT] if isinstance(v, str) else v) for k, v in details.items()}
