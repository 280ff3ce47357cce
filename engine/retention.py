"""Retention, anonymization and erasure of cases, and the export of what is held about a patient.

A case (process instance) belongs to the patient it names. Once it is finished (completed or
cancelled) it is kept for the retention period of its process, then anonymized: the values that
identify the patient or the complainant, and every free text, are replaced by ANONYMIZED in every
row the case left behind (variables, stored state, search text, tasks, history, external tasks,
incidents, the SMS outbox), while what statistics need survives: the rows themselves (counts),
their times, numbers (satisfaction scores), yes/no answers, dates, the values a form offers to
choose from (category, tier, department) and the variables listed in KEEP_VARIABLES.

Erasure removes every row of the case (the same code removes the instances of a deployment
deleted with cascade); the audit log (`audit_events`) is kept on purpose: it records who saw,
exported, anonymized or erased the case, by record number, never with a name or phone number.

Settings per process (process-level `camunda:properties` in Camunda Modeler, the newest deployed
version of the process key applies to all its cases):

    retention.days        days a finished case is kept before anonymization (default:
                          Settings.retention_days, env RETENTION_DAYS, 1095 = 3 years)
    privacy.identifying   more variable names that identify a person (comma separated)
    privacy.keep          more variable names whose text survives anonymization

Camunda's `historyTimeToLive` attribute is not used: Camunda Modeler writes 180 into every new
diagram by default, so it says nothing about a decision the hospital took.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, exists, func, inspect, select, update
from sqlalchemy.orm import Session

from engine.errors import Conflict, InvalidInput, NotFound
from engine.models import (
    AuditEvent,
    Base,
    ExternalTask,
    HistoryEvent,
    Incident,
    InstanceVariable,
    MessageSubscription,
    OutboxMessage,
    ProcessDefinition,
    ProcessInstance,
    Resource,
    Task,
)
from engine.privacy import DEFAULT_PATIENT_KEYS, DEFAULT_POLICY, PHONE, PiiPolicy, policy_from_bpmn
from engine.variables import json_safe

ANONYMIZED = "[已匿名]"
ANONYMIZED_ACTION = "anonymized"  # the history row that marks an anonymized case
FINISHED = ("completed", "cancelled")

# Record numbers and phone numbers: what an export searches by. The personal-data policy of
# engine/privacy.py (built-in name patterns, a process's pii.* properties) adds to both lists.
RECORD_VARIABLES = frozenset(DEFAULT_PATIENT_KEYS) | frozenset({"inpatientNo", "outpatientNo", "admissionNo"})
PHONE_VARIABLES = frozenset({"phone", "mobile", "patientPhone", "complainantPhone", "contactPhone"})
# Variables that identify a patient, complainant or visitor: replaced whatever their type.
IDENTIFYING_VARIABLES = RECORD_VARIABLES | PHONE_VARIABLES | frozenset({
    "patientName", "complainantName", "contactName", "visitorName", "familyName", "idNumber", "idCardNo",
    "idCard", "passportNo", "insuranceNo", "address", "homeAddress", "email", "wechat", "birthDate",
    "dateOfBirth", "bedNo",
})
# Text that is not about the person and that statistics group by (tiers, units, staff user names).
KEEP_VARIABLES = frozenset({
    "tier", "category", "complaintCategory", "department", "channel", "ward", "destination",
    "destinationRoom", "leadRole", "responsibleUnit", "improvementUnit", "escortGroup", "escortUser",
    "receivedBy", "initiator", "handoverGroup", "handoverTo", "requestType", "handling", "location",
    "urgency", "mobility", "diagnosisGroup", "recovery", "feedbackChannel", "notifyChannel",
    "complaintFounded", "acceptDecision", "incidentType", "overdueAction", "relation", "patientCondition",
})
# Case numbers: kept, with any identifying value inside them replaced ("TS-HF-[已匿名]-20260302").
CASE_NUMBER_VARIABLES = frozenset({"businessKey", "caseNo", "complaintNo", "parentBusinessKey"})
# Keys of history details that hold variables by name, and keys that hold free text.
_VARIABLE_DETAIL_KEYS = ("changed", "variables")
_FREE_TEXT_DETAIL_KEYS = frozenset({"reason", "error", "error_message", "error_details", "comment", "note",
                                    "annotation"})
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?")
_KEPT_TABLES = frozenset({AuditEvent.__tablename__})  # outlives the cases it names
_CHUNK = 500


# --------------------------------------------------------------------------- settings ------
@dataclass
class Policy:
    """What anonymization does with one definition's variables."""

    identifying: frozenset[str] = IDENTIFYING_VARIABLES
    pii: PiiPolicy = field(default_factory=lambda: DEFAULT_POLICY)  # engine/privacy.py: phone, ID, address
    keep: frozenset[str] = KEEP_VARIABLES
    enum_values: dict[str, set[str]] = field(default_factory=dict)
    retention_days: int | None = None  # the process's own setting, None: the service default
    retention_error: str | None = None  # the process's setting cannot be read
    # the texts removed from this case (longest first): replaced inside case numbers and other text
    secrets: tuple[str, ...] = ()

    def is_identifying(self, name: str) -> bool:
        return name in self.identifying or self.pii.kind_of(name) is not None or name in self.pii.patient_keys


def _names(raw: str | None) -> set[str]:
    return {n.strip() for n in (raw or "").split(",") if n.strip()}


def _parse_definition(xml: bytes, key: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """The process element's camunda:properties and the enum values its forms offer."""
    from engine.dialect.extensions import _B, _C, read_extensions
    from engine.dialect.parser import parse_xml

    root = parse_xml(xml, "resource")
    process = next((p for p in root.iter(_B + "process") if p.get("id") == key), None)
    if process is None:
        return {}, {}
    properties = dict(read_extensions(process).get("properties") or {})
    enums: dict[str, set[str]] = {}
    for f in process.iter(_C + "formField"):
        if f.get("type") == "enum" and f.get("id"):
            enums.setdefault(f.get("id"), set()).update(
                v.get("id") for v in f.iterfind(_C + "value") if v.get("id") is not None)
    return properties, enums


def _retention_property(raw: str | None, key: str) -> int | None:
    if raw is None or str(raw).strip() == "":
        return None
    try:
        days = int(str(raw).strip())
    except ValueError:
        days = -1
    if days < 1:
        raise InvalidInput(f"流程 {key} 的 retention.days 必须是正整数（天），现为 '{raw}' / "
                           f"process '{key}': retention.days must be a whole number of days, got '{raw}'",
                           process_key=key)
    return days


_POLICIES: OrderedDict[tuple[str, str], Policy] = OrderedDict()  # a deployed definition never changes
_POLICIES_LOCK = threading.Lock()


def _load_policy(s: Session, definition_id: str, cache: dict | None = None) -> Policy:
    if cache is not None and definition_id in cache:
        return cache[definition_id]
    found = s.execute(select(ProcessDefinition.key, ProcessDefinition.content_hash, ProcessDefinition.resource_id)
                      .where(ProcessDefinition.id == definition_id)).first()
    if found is None:
        return Policy()
    with _POLICIES_LOCK:
        policy = _POLICIES.get((definition_id, found.content_hash))
    if policy is None:
        content = s.execute(select(Resource.content).where(Resource.id == found.resource_id)).scalar_one()
        properties, enums = _parse_definition(content, found.key)
        try:
            days, error = _retention_property(properties.get("retention.days"), found.key), None
        except InvalidInput as exc:
            days, error = None, exc.message
        identifying = _names(properties.get("privacy.identifying"))
        policy = Policy(identifying=IDENTIFYING_VARIABLES | identifying, pii=policy_from_bpmn(content, found.key),
                        keep=(KEEP_VARIABLES | _names(properties.get("privacy.keep"))) - identifying,
                        enum_values=enums, retention_days=days, retention_error=error)
        with _POLICIES_LOCK:
            _POLICIES[(definition_id, found.content_hash)] = policy
            while len(_POLICIES) > 256:
                _POLICIES.popitem(last=False)
    if cache is not None:
        cache[definition_id] = policy
    return policy


def retention_days(engine, process_key: str, *, session: Session | None = None, cache: dict | None = None) -> int:
    """Days a finished case of `process_key` is kept: the newest version's `retention.days`, else
    the service default. An unreadable setting raises InvalidInput (nothing is anonymized on it)."""
    def read(s: Session) -> int:
        newest = s.execute(select(ProcessDefinition.id).where(ProcessDefinition.key == process_key)
                           .order_by(ProcessDefinition.version.desc()).limit(1)).scalar()
        policy = _load_policy(s, newest, cache) if newest else Policy()
        if policy.retention_error:
            raise InvalidInput(policy.retention_error, process_key=process_key)
        return policy.retention_days or engine.settings.retention_days

    if session is not None:
        return read(session)
    with engine.db.reader() as s:
        return read(s)


# ------------------------------------------------------------------------- scrubbing ------
def _is_timestamp(text: str) -> bool:
    return bool(_TIMESTAMP.fullmatch(text.strip()))


def _typed(value: Any) -> bool:
    """A Camunda-typed value: {"value": ..., "type": ...}."""
    return isinstance(value, dict) and "value" in value and set(value) <= {"value", "type", "valueInfo", "local"}


def scrub_variable(name: str, value: Any, policy: Policy) -> Any:
    """The value a variable keeps after anonymization."""
    if value is None or value == "":
        return value
    if policy.is_identifying(name):
        if _typed(value):
            return {**value, "value": ANONYMIZED, "type": "String"}
        return ANONYMIZED
    return _scrub_free(name, value, policy)


def _scrub_free(name: str, value: Any, policy: Policy) -> Any:
    if value is None or isinstance(value, bool | int | float | Decimal | date):
        return value
    if isinstance(value, str):
        if name in CASE_NUMBER_VARIABLES:
            return scrub_text(value, policy.secrets)
        if (value == "" or name in policy.keep or value in policy.enum_values.get(name, ())
                or _is_timestamp(value)):
            return value
        return ANONYMIZED
    if _typed(value):
        return {**value, "value": _scrub_free(name, value["value"], policy)}
    if isinstance(value, dict):
        return {k: scrub_variable(str(k), v, policy) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_free(name, v, policy) for v in value]
    return ANONYMIZED


def _secrets_of(name: str, value: Any, policy: Policy, out: set[str]) -> None:
    """The texts a variable held that anonymization removes (searched for in other text too)."""
    if name in CASE_NUMBER_VARIABLES:
        return
    scrubbed = scrub_variable(name, value, policy)
    if scrubbed == value:
        return
    if policy.is_identifying(name):
        _all_texts(value, out)
        return
    if isinstance(value, dict):
        if _typed(value):
            _secrets_of(name, value["value"], policy, out)
            return
        for k, v in value.items():
            _secrets_of(str(k), v, policy, out)
    elif isinstance(value, list | tuple):
        for v in value:
            _secrets_of(name, v, policy, out)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value).strip()
        if len(text) >= 2:
            out.add(text)


def _all_texts(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _all_texts(v, out)
    elif isinstance(value, list | tuple):
        for v in value:
            _all_texts(v, out)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value).strip()
        if len(text) >= 2:
            out.add(text)


def scrub_text(text: str | None, secrets: Iterable[str]) -> str | None:
    """`text` with every removed value in it replaced (longest first)."""
    if not text:
        return text
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, ANONYMIZED)
    return text


def _scrub_details(value: Any, policy: Policy, secrets: list[str], key: str | None = None) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in _VARIABLE_DETAIL_KEYS and isinstance(v, dict):
                out[k] = {n: scrub_variable(str(n), x, policy) for n, x in v.items()}
            elif k in _FREE_TEXT_DETAIL_KEYS and isinstance(v, str) and v:
                out[k] = ANONYMIZED
            elif policy.is_identifying(k):
                out[k] = scrub_variable(k, v, policy)
            else:
                out[k] = _scrub_details(v, policy, secrets, k)
        return out
    if isinstance(value, list):
        return [_scrub_details(v, policy, secrets, key) for v in value]
    if isinstance(value, str):
        return scrub_text(value, secrets)
    return value


def _text_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)[:512]
    return None


def _type_name(value: Any, old: str) -> str:
    if value == ANONYMIZED:
        return "String"
    return old


def _search_text(business_key: str | None, summary: Mapping[str, Any]) -> str | None:
    parts = [business_key or ""] + [str(v) for v in summary.values() if v != ANONYMIZED]
    return " ".join(parts).strip() or None


def _anonymize_rows(engine, s: Session, row: ProcessInstance, policy: Policy) -> dict:
    """Scrub every row of one finished case in the session. Returns what was changed (counts)."""
    iid = row.id
    variables = {v.name: v for v in s.execute(select(InstanceVariable).where(
        InstanceVariable.instance_id == iid)).scalars()}
    history = s.execute(select(HistoryEvent).where(HistoryEvent.instance_id == iid)).scalars().all()
    externals = s.execute(select(ExternalTask).where(ExternalTask.instance_id == iid)).scalars().all()

    found: set[str] = set()
    for v in variables.values():
        _secrets_of(v.name, v.value, policy, found)
    for h in history:
        for k in _VARIABLE_DETAIL_KEYS:
            held = (h.details or {}).get(k)
            if isinstance(held, dict):
                for n, x in held.items():
                    _secrets_of(str(n), x, policy, found)
    for e in externals:
        for n, x in (e.variables or {}).items():
            _secrets_of(str(n), x.get("value") if isinstance(x, dict) else x, policy, found)
    for n, x in (row.summary or {}).items():
        _secrets_of(n, x, policy, found)
    secrets = sorted(found, key=len, reverse=True)
    policy = replace(policy, secrets=tuple(secrets))

    kept: dict[str, Any] = {}
    changed_variables = 0
    for v in variables.values():
        new = scrub_variable(v.name, v.value, policy)
        kept[v.name] = new
        if new != v.value:
            changed_variables += 1
            v.value = new
            v.text_value = _text_value(new)
            v.type_name = _type_name(new, v.type_name)

    business_key = scrub_text(row.business_key, secrets)
    summary = {k: scrub_variable(k, x, policy) for k, x in (row.summary or {}).items()}
    search = _search_text(business_key, summary)
    row.business_key, row.summary, row.search_text = business_key, summary, search
    row.state = engine.serializer.dump_data(kept)
    row.version += 1

    for t in s.execute(select(Task).where(Task.instance_id == iid)).scalars():
        t.name, t.business_key, t.search_text = scrub_text(t.name, secrets), business_key, search
    for h in history:
        h.details = _scrub_details(h.details or {}, policy, secrets)
        h.element_name = scrub_text(h.element_name, secrets)
    for e in externals:
        e.variables = {n: ({**x, "value": scrub_variable(str(n), x.get("value"), policy)} if isinstance(x, dict)
                           else scrub_variable(str(n), x, policy)) for n, x in (e.variables or {}).items()}
        e.business_key = business_key
        e.activity_name = scrub_text(e.activity_name, secrets)
        e.error_message = ANONYMIZED if e.error_message else e.error_message
        e.error_details = ANONYMIZED if e.error_details else e.error_details
    for i in s.execute(select(Incident).where(Incident.instance_id == iid)).scalars():
        i.business_key = business_key
        i.message = ANONYMIZED if i.message else i.message
        i.annotation = ANONYMIZED if i.annotation else i.annotation
    outbox = 0
    for m in s.execute(select(OutboxMessage).where(OutboxMessage.instance_id == iid)).scalars():
        outbox += 1
        m.recipient = m.recipient_masked = m.text = ANONYMIZED
        m.result = ANONYMIZED if m.result else m.result
        m.business_key = business_key
    s.execute(update(MessageSubscription).where(MessageSubscription.instance_id == iid)
              .values(business_key=business_key))
    return {"variables": changed_variables, "history": len(history), "outbox": outbox}


# --------------------------------------------------------------------------- queries ------
def _patient_of(s: Session, row: ProcessInstance, policy: Policy) -> str | None:
    """The case's record number (what the audit log names a patient by)."""
    keys = list(policy.pii.patient_keys) + sorted(RECORD_VARIABLES - set(policy.pii.patient_keys))
    values = dict(s.execute(select(InstanceVariable.name, InstanceVariable.text_value).where(
        InstanceVariable.instance_id == row.id, InstanceVariable.name.in_(keys),
        InstanceVariable.text_value.is_not(None), InstanceVariable.text_value != ANONYMIZED)).all())
    return next((values[k] for k in keys if values.get(k)), None)


def is_anonymized(s: Session, instance_id: str) -> bool:
    return s.execute(select(HistoryEvent.id).where(HistoryEvent.instance_id == instance_id,
                                                   HistoryEvent.action == ANONYMIZED_ACTION).limit(1)).first() is not None


def case_status(engine, instance_id: str) -> dict:
    """Status, end, retention period and whether the case is anonymized (for the admin page)."""
    with engine.db.reader() as s:
        row = s.get(ProcessInstance, instance_id)
        if row is None:
            raise NotFound(f"流程实例 {instance_id} 不存在 / process instance '{instance_id}' does not exist",
                           instance_id=instance_id)
        return _status(engine, s, row)


def _status(engine, s: Session, row: ProcessInstance, cache: dict | None = None) -> dict:
    try:
        days = retention_days(engine, row.process_key, session=s, cache=cache)
        error = None
    except InvalidInput as exc:
        days, error = None, exc.message
    until = row.ended_at + timedelta(days=days) if row.ended_at and days else None
    return {"id": row.id, "process_key": row.process_key, "business_key": row.business_key,
            "status": row.status, "started_at": row.started_at, "ended_at": row.ended_at,
            "retention_days": days, "retention_error": error, "retain_until": until,
            "past_retention": until is not None and until <= engine.clock.now(),
            "anonymized": is_anonymized(s, row.id), "parent_instance_id": row.parent_instance_id}


# ----------------------------------------------------------------------- anonymize ------
def anonymize(engine, instance_id: str, *, user: str | None, reason: str | None = None,
              address: str | None = None, scheduled: bool = False) -> dict:
    """Anonymize one finished case (idempotent: a case already anonymized is left as it is).
    Refused while the case runs. Audited as "anonymize"."""
    reason = _reason(reason, required=not scheduled)
    with engine.db.transaction() as s:
        row = _locked(s, instance_id)
        if row.status not in FINISHED:
            raise Conflict(f"流程实例仍在办理中，不能匿名化；请先办结或撤销 / the case {instance_id} is still "
                           "running: finish or cancel it before anonymizing", instance_id=instance_id)
        if is_anonymized(s, instance_id):
            return {"instance_id": instance_id, "anonymized": False, "already": True}
        status = _status(engine, s, row)
        policy = _load_policy(s, row.definition_id)
        patient = _patient_of(s, row, policy)
        with s.no_autoflush:  # read everything first, write once at commit
            counts = _anonymize_rows(engine, s, row, policy)
        s.add(HistoryEvent(instance_id=instance_id, at=engine.clock.now(), user=user, action=ANONYMIZED_ACTION,
                           details={"scheduled": scheduled, "retention_days": status["retention_days"],
                                    "within_retention": not status["past_retention"]}))
        details = {"process": row.process_key, "business_key": row.business_key, "scheduled": scheduled,
                   "retention_days": status["retention_days"], "within_retention": not status["past_retention"],
                   **counts}
    if reason:
        details["reason"] = reason
    engine.audit.record("anonymize", user=user, address=address, resource_type="process_instance",
                        resource_id=instance_id, instance_id=instance_id, patient=patient, details=details)
    return {"instance_id": instance_id, "anonymized": True, "already": False, **counts}


def _reason(reason: str | None, *, required: bool) -> str | None:
    reason = (reason or "").strip()
    if required and not reason:
        raise InvalidInput("请填写原因（记入审计日志） / a reason is required (it goes into the audit log)",
                           field="reason")
    if len(reason) > 500:
        raise InvalidInput("原因最多 500 字 / the reason is longer than 500 characters", field="reason")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in reason):
        raise InvalidInput("原因含有控制字符 / the reason contains control characters", field="reason")
    return reason or None


def _locked(s: Session, instance_id: str) -> ProcessInstance:
    q = select(ProcessInstance).where(ProcessInstance.id == instance_id)
    if s.bind.dialect.name != "sqlite":
        q = q.with_for_update()
    row = s.execute(q).scalar_one_or_none()
    if row is None:
        raise NotFound(f"流程实例 {instance_id} 不存在 / process instance '{instance_id}' does not exist",
                       instance_id=instance_id)
    return row


# --------------------------------------------------------------------------- erase ------
def instance_tables() -> list:
    """Every table that keeps rows of an instance (an `instance_id` column, or a key to such a
    table's rows), children first; the audit log is not one of them."""
    tables = [t for t in Base.metadata.sorted_tables
              if t.name not in _KEPT_TABLES and t.name != ProcessInstance.__tablename__]
    return list(reversed(tables))


def purge_instances(s: Session, instance_ids: Iterable[str]) -> int:
    """Delete every row that belongs to the instances, in the caller's transaction: rows of every
    table with an `instance_id` column, the rows that point at those rows (task candidates), and
    the instances; instances started from them keep running on their own, their link cleared.
    Returns how many instances were deleted."""
    ids = list(dict.fromkeys(instance_ids))
    deleted = 0
    tables = instance_tables()
    owned = {t.name for t in tables if "instance_id" in t.c}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        for table in tables:
            if "instance_id" in table.c:
                s.execute(delete(table).where(table.c.instance_id.in_(chunk)))
                continue
            for fk in table.foreign_keys:
                parent = fk.column.table
                if parent.name in owned:
                    s.execute(delete(table).where(fk.parent.in_(
                        select(fk.column).where(parent.c.instance_id.in_(chunk)))))
        s.execute(update(ProcessInstance).where(ProcessInstance.parent_instance_id.in_(chunk))
                  .values(parent_instance_id=None).execution_options(synchronize_session=False))
        deleted += s.execute(delete(ProcessInstance).where(ProcessInstance.id.in_(chunk))).rowcount or 0
    return deleted


def erase(engine, instance_id: str, *, user: str | None, reason: str | None,
          within_retention: bool = False, address: str | None = None) -> dict:
    """Delete every row of one finished case. Refused while it runs; within its retention period
    only when the administrator confirms a legal reason (`within_retention`). Audited as "erase"
    (with the record number, never a name or phone number); the history keeps an "erase" row
    without the instance id or patient data."""
    reason = _reason(reason, required=True)
    with engine.db.transaction() as s:
        row = _locked(s, instance_id)
        if row.status not in FINISHED:
            raise Conflict(f"流程实例仍在办理中，不能删除；请先办结或撤销 / the case {instance_id} is still running: "
                           "finish or cancel it before erasing", instance_id=instance_id)
        status = _status(engine, s, row)
        if not status["past_retention"] and not within_retention:
            until = status["retain_until"].date().isoformat() if status["retain_until"] else "?"
            raise Conflict(f"该案例在保存期限内（至 {until}），须确认有法定理由方可删除 / the case is within its "
                           f"retention period (until {until}): confirm a legal reason to erase it",
                           instance_id=instance_id, retain_until=until)
        policy = _load_policy(s, row.definition_id)
        patient = _patient_of(s, row, policy)
        details = {"process": row.process_key, "business_key": row.business_key, "status": row.status,
                   "retention_days": status["retention_days"], "within_retention": not status["past_retention"],
                   "reason": reason}
        details["business_key"] = scrub_text(row.business_key, _identifying_texts(s, instance_id, policy))
        purge_instances(s, [instance_id])
        s.add(HistoryEvent(instance_id=None, at=engine.clock.now(), user=user, action="erase",
                           details={"process": row.process_key, "instances_deleted": 1}))
    engine.audit.record("erase", user=user, address=address, resource_type="process_instance",
                        resource_id=instance_id, instance_id=instance_id, patient=patient, details=details)
    return {"instance_id": instance_id, "erased": True}


def _identifying_texts(s: Session, instance_id: str, policy: Policy) -> list[str]:
    found: set[str] = set()
    for name, value in s.execute(select(InstanceVariable.name, InstanceVariable.value).where(
            InstanceVariable.instance_id == instance_id)):
        if policy.is_identifying(name):
            _all_texts(value, found)
    return sorted(found, key=len, reverse=True)


def purge_orphans(engine, *, user: str | None = None) -> int:
    """Delete rows that name an instance that no longer exists (left by deletions before every
    row of an instance was removed with it). Returns how many rows were deleted; audited."""
    total, per_table = 0, {}
    with engine.db.transaction() as s:
        for table in instance_tables():
            if "instance_id" not in table.c:
                continue
            n = s.execute(delete(table).where(table.c.instance_id.is_not(None), ~exists().where(
                ProcessInstance.id == table.c.instance_id))).rowcount or 0
            if n:
                per_table[table.name] = n
                total += n
    if total:
        engine.audit.record("erase", user=user, resource_type="orphaned_rows", details={"rows": per_table})
    return total


# ----------------------------------------------------------------------- scheduled ------
def due_for_anonymization(engine, *, limit: int = 200) -> tuple[list[str], dict[str, str]]:
    """Finished cases past their process's retention period and not yet anonymized, oldest end
    first; and the process keys whose setting cannot be read (skipped), with the reason."""
    now = engine.clock.now()
    out: list[str] = []
    errors: dict[str, str] = {}
    cache: dict = {}
    marked = exists().where(HistoryEvent.instance_id == ProcessInstance.id,
                            HistoryEvent.action == ANONYMIZED_ACTION)
    with engine.db.reader() as s:
        keys = s.execute(select(ProcessInstance.process_key).where(
            ProcessInstance.status.in_(FINISHED)).distinct()).scalars().all()
        for key in sorted(keys):
            try:
                days = retention_days(engine, key, session=s, cache=cache)
            except InvalidInput as exc:
                errors[key] = exc.message
                continue
            room = limit - len(out)
            if room <= 0:
                break
            out += s.execute(select(ProcessInstance.id).where(
                ProcessInstance.process_key == key, ProcessInstance.status.in_(FINISHED),
                ProcessInstance.ended_at <= now - timedelta(days=days), ~marked)
                .order_by(ProcessInstance.ended_at, ProcessInstance.id).limit(room)).scalars().all()
    return out, errors


def run_retention(engine, *, user: str = "retention", batch: int = 200, max_cases: int = 100_000) -> dict:
    """The daily job: anonymize every finished case past retention, in batches; clear orphaned
    rows. Idempotent: a second run (or another scheduler at the same time) finds nothing to do."""
    done, skipped, failed = 0, 0, {}
    errors: dict[str, str] = {}
    while done + skipped + len(failed) < max_cases:
        ids, errors = due_for_anonymization(engine, limit=batch)
        ids = [i for i in ids if i not in failed]
        if not ids:
            break
        for iid in ids:
            try:
                result = anonymize(engine, iid, user=user, scheduled=True)
            except (Conflict, NotFound) as exc:  # reopened or erased meanwhile
                failed[iid] = exc.message
                continue
            if result["anonymized"]:
                done += 1
            else:
                skipped += 1
    orphans = purge_orphans(engine, user=user)
    return {"anonymized": done, "already": skipped, "failed": failed, "settings_errors": errors,
            "orphaned_rows_deleted": orphans}


# -------------------------------------------------------------------------- export ------
def normalize_phone(phone: str) -> list[str]:
    """The spellings a phone number may be stored in: as typed, digits only, without +86."""
    typed = (phone or "").strip()
    digits = re.sub(r"\D", "", typed)
    if not 5 <= len(digits) <= 20 or not re.fullmatch(r"[\d\s\-+()]+", typed):
        raise InvalidInput("电话号码格式不正确（5–20 位数字） / the phone number must have 5 to 20 digits",
                           field="phone")
    forms = {typed, digits}
    if digits.startswith("86") and len(digits) == 13:
        forms.add(digits[2:])
    if len(digits) == 11 and digits.startswith("1"):
        forms.update({f"+86{digits}", f"{digits[:3]}-{digits[3:7]}-{digits[7:]}", f"{digits[:3]} {digits[3:7]} {digits[7:]}"})
    return sorted(forms)


def _check_record(record: str) -> str:
    record = (record or "").strip()
    if not record or len(record) > 64 or any(ord(c) < 32 for c in record):
        raise InvalidInput("病历号须为 1–64 个字符 / the record number must be 1 to 64 characters",
                           field="record")
    return record


def _lookup_names(s: Session, kind: str) -> list[str]:
    """The variable names that hold record numbers (kind "record") or phone numbers ("phone"): the
    built-in lists, what the newest version of each process declares (engine/privacy.py), and
    the stored names its phone patterns recognise."""
    names = set(RECORD_VARIABLES if kind == "record" else PHONE_VARIABLES)
    newest = select(ProcessDefinition.key, func.max(ProcessDefinition.version).label("version")) \
        .group_by(ProcessDefinition.key).subquery()
    policies = [DEFAULT_POLICY] + [policy_from_bpmn(content, key) for key, content in s.execute(
        select(ProcessDefinition.key, Resource.content)
        .join(newest, (newest.c.key == ProcessDefinition.key) & (newest.c.version == ProcessDefinition.version))
        .join(Resource, Resource.id == ProcessDefinition.resource_id))]
    if kind == "record":
        for policy in policies:
            names.update(policy.patient_keys)
        return sorted(names)
    stored = s.execute(select(InstanceVariable.name).distinct()).scalars().all()
    names.update(n for n in stored if any(policy.kind_of(n) == PHONE for policy in policies))
    return sorted(names)


def find_patient_cases(engine, *, record: str | None = None, phone: str | None = None) -> list[str]:
    """Instances whose record-number (or phone) variables hold exactly this value."""
    if bool(record) == bool(phone):
        raise InvalidInput("请填写病历号或电话号码之一 / give either a record number or a phone number",
                           field="record")
    values = [_check_record(record)] if record else normalize_phone(phone)
    with engine.db.reader() as s:
        names = _lookup_names(s, "record" if record else "phone")
        return list(s.execute(select(InstanceVariable.instance_id).join(
            ProcessInstance, ProcessInstance.id == InstanceVariable.instance_id).where(
            InstanceVariable.name.in_(sorted(names)), InstanceVariable.text_value.in_(values))
            .distinct().order_by(InstanceVariable.instance_id)).scalars())


def patient_cases(engine, *, record: str | None = None, phone: str | None = None) -> list[dict]:
    """The cases of a patient with their retention status (for the admin page)."""
    ids = find_patient_cases(engine, record=record, phone=phone)
    cache: dict = {}
    with engine.db.reader() as s:
        rows = s.execute(select(ProcessInstance).where(ProcessInstance.id.in_(ids))
                         .order_by(ProcessInstance.started_at)).scalars().all()
        return [_status(engine, s, r, cache) for r in rows]


def _plain(value: Any) -> Any:
    """A column's value in the export: its JSON-safe form (engine/variables.py); binary data left out."""
    return None if isinstance(value, bytes) else json_safe(value)


def _row_dict(obj, skip: tuple[str, ...] = ()) -> dict:
    return {c.key: _plain(getattr(obj, c.key)) for c in inspect(obj).mapper.column_attrs if c.key not in skip}


def export_patient(engine, *, record: str | None = None, phone: str | None = None, user: str | None,
                   address: str | None = None) -> dict:
    """Everything held about one patient: every case whose record-number or phone variables match,
    with its variables, tasks, history, external tasks, text messages and incidents, and the audit
    events that name the patient. Audited as "export" (the phone number only masked)."""
    ids = find_patient_cases(engine, record=record, phone=phone)
    cases = []
    records: set[str] = set()
    with engine.db.reader() as s:
        record_names = _lookup_names(s, "record")
        for iid in ids:
            row = s.get(ProcessInstance, iid)
            if row is None:
                continue
            definition = s.get(ProcessDefinition, row.definition_id)
            variables = {v.name: _plain(v.value) for v in s.execute(
                select(InstanceVariable).where(InstanceVariable.instance_id == iid)
                .order_by(InstanceVariable.name)).scalars()}
            records.update(str(variables[n]) for n in record_names if variables.get(n) not in (None, ""))

            def rows(model, order, iid=iid):
                return [_row_dict(r) for r in s.execute(select(model).where(model.instance_id == iid)
                                                        .order_by(order)).scalars()]

            cases.append({
                **_row_dict(row, skip=("state", "search_text", "version")),
                "process_name": definition.name if definition else None,
                "variables": variables,
                "tasks": rows(Task, Task.created_at),
                "history": rows(HistoryEvent, HistoryEvent.id),
                "external_tasks": rows(ExternalTask, ExternalTask.created_at),
                "text_messages": rows(OutboxMessage, OutboxMessage.id),
                "incidents": rows(Incident, Incident.created_at),
            })
        if record:
            records.add(record.strip())
        access = [_row_dict(a) for a in s.execute(select(AuditEvent).where(
            AuditEvent.patient.in_(sorted(records)) | AuditEvent.instance_id.in_(ids))
            .order_by(AuditEvent.id)).scalars()] if (records or ids) else []
    from engine.notify import mask_phone

    query = {"record": record.strip()} if record else {"phone": phone.strip()}
    payload = {"exported_at": engine.clock.now().isoformat(), "exported_by": user, "query": query,
               "records": sorted(records), "cases": cases, "access_log": access}
    engine.audit.record("export", user=user, address=address, resource_type="patient",
                        patient=(record.strip() if record else (min(records) if records else None)),
                        details={"by": "record" if record else "phone",
                                 **({"phone": mask_phone(phone)} if phone else {}),
                                 "cases": len(cases), "records": sorted(records)[:20]})
    return payload


__all__ = [
    "ANONYMIZED", "IDENTIFYING_VARIABLES", "KEEP_VARIABLES", "PHONE_VARIABLES", "RECORD_VARIABLES", "Policy",
    "anonymize", "case_status", "due_for_anonymization", "erase", "export_patient", "find_patient_cases",
    "instance_tables", "is_anonymized", "normalize_phone", "patient_cases", "purge_instances", "purge_orphans",
    "retention_days", "run_retention", "scrub_text", "scrub_variable",
]
