"""The request side of `engine.privacy`: the masker of a case for the signed-in user (pages) or the
REST caller, reveals, and one audit line per read.

    m = masking.for_instance(instance, who)          # instance as get_instance() returns it
    m.values(instance["variables"])                  # masked for `who`
    masking.audit_read("read_instance", instance_id=..., patient=m.patient(variables))

Reads are audited with one INSERT from what the view already has (never a second read of the
case only for the audit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import current_app, request

from engine.privacy import Masker, PiiPolicy, PolicyCache, Viewer
from engine.service import TaskQuery, WorkflowEngine
from web.access import Staff


def _engine() -> WorkflowEngine:
    return current_app.extensions["engine"]


def policies() -> PolicyCache:
    return current_app.extensions.setdefault("pii_policies", PolicyCache())


def policy(definition_id: str | None) -> PiiPolicy:
    return policies().get(_engine(), definition_id)


def viewer(who: Staff) -> Viewer:
    unmasked = who.username in (_engine().settings.unmasked_api_users or ())
    return Viewer(who.username, tuple(who.groups), unmasked)


def for_instance(instance: Mapping[str, Any], who: Staff) -> Masker:
    """`instance` with its definition_id and its tasks (get_instance() has both)."""
    return Masker(policy(instance.get("definition_id")), viewer(who), instance.get("tasks") or [])


def for_definition(definition_id: str | None, who: Staff, tasks: Iterable[Mapping[str, Any]] = ()) -> Masker:
    return Masker(policy(definition_id), viewer(who), tasks)


def for_variables(definition_id: str | None, instance_id: str, who: Staff, names: Iterable[str],
                  tasks: Iterable[Mapping[str, Any]] | None = None) -> Masker:
    """The masker of a case whose variables an API returns. The case's open tasks are read only
    when some of `names` hold personal data and the caller is not an integration account."""
    m = Masker(policy(definition_id), viewer(who), ())
    if tasks is None and not m.viewer.unmasked and m.policy.personal(names):
        tasks = _engine().list_tasks(TaskQuery(instance_id=instance_id, limit=200))
    if tasks:
        m = Masker(m.policy, m.viewer, tasks)
    return m


def address() -> str | None:
    return request.remote_addr if request else None


def audit_read(action: str, who: Staff | str, *, resource_type: str | None = None,
               resource_id: str | None = None, instance_id: str | None = None, patient: str | None = None,
               details: Mapping[str, Any] | None = None) -> None:
    """One audit line: who (a Staff or a user name) read what, from which address."""
    user = who if isinstance(who, str) else who.username
    _engine().audit.record(action, user=user, address=address(), resource_type=resource_type,
                           resource_id=resource_id, instance_id=instance_id, patient=patient,
                           details=details)


def mark_rows(rows: list[dict], masker: Masker, instance: Mapping[str, Any]) -> list[dict]:
    """Variable rows of a page (web.tasks.variable_rows) with `masked` and the reveal action's URL
    on each masked value."""
    from flask import url_for

    raw = instance.get("variables") or {}
    for row in rows:
        name = row["name"]
        if raw.get(name) not in (None, "") and masker.is_masked(name):
            row["masked"] = True
            row["reveal_url"] = url_for("audit.reveal", instance_id=instance["id"], name=name)
    return rows


def mask_summaries(summaries: Mapping[str, Mapping[str, Any]], tasks: Iterable[Mapping[str, Any]],
                   who: Staff) -> dict[str, dict[str, Any]]:
    """Instance summaries of a list (task list rows): personal data as its process declares it,
    masked unless one of the listed tasks is the viewer's step that needs it."""
    by_instance: dict[str, list[Mapping[str, Any]]] = {}
    definitions: dict[str, str] = {}
    for t in tasks:
        by_instance.setdefault(t["instance_id"], []).append(t)
        definitions[t["instance_id"]] = t.get("definition_id")
    out = {}
    for instance_id, summary in summaries.items():
        m = for_definition(definitions.get(instance_id), who, by_instance.get(instance_id, ()))
        out[instance_id] = m.values(summary) if m.policy.personal(summary) else dict(summary)
    return out


# ------------------------------------------------------------------------------- the APIs ----
def read_instance(instance: Mapping[str, Any], who: Staff) -> dict[str, Any]:
    """An instance as get_instance() returns it, masked for `who` (variables, the values in its
    history, its summary and its children's), with the read audited."""
    m = for_instance(instance, who)
    raw = instance.get("variables") or {}
    out = dict(instance)
    out["variables"] = m.values(raw)
    out["history"] = m.history(instance.get("history") or [])
    out["summary"] = m.values(instance.get("summary") or {})
    out["children"] = [mask_summary(c, who) for c in instance.get("children") or []]
    audit_read("read_instance", who, resource_type="instance", resource_id=instance["id"],
               instance_id=instance["id"], patient=m.patient(raw))
    return out


def mask_summary(summary_row: Mapping[str, Any], who: Staff) -> dict[str, Any]:
    """An instance row of a list (id, definition_id, summary …): personal data in its summary masked
    (lists never show it in full)."""
    summary = summary_row.get("summary") or {}
    m = for_definition(summary_row.get("definition_id"), who)
    if not summary or not m.policy.personal(summary):
        return dict(summary_row)
    return {**summary_row, "summary": m.values(summary)}


def read_variables(stored: Mapping[str, Mapping[str, Any]], who: Staff, *, definition_id: str | None,
                   instance_id: str, resource_type: str = "instance", resource_id: str | None = None,
                   tasks: Iterable[Mapping[str, Any]] | None = None,
                   action: str = "read_variables") -> dict[str, dict[str, Any]]:
    """Variables in the engine's form ({name: {"value", "type"}}) masked for `who`, the read
    audited with the patient's record number."""
    m = for_variables(definition_id, instance_id, who, stored.keys(), tasks)
    patient = m.patient({name: v.get("value") for name, v in stored.items()})
    audit_read(action, who, resource_type=resource_type, resource_id=resource_id or instance_id,
               instance_id=instance_id, patient=patient,
               details={"variables": len(stored)} if stored else None)
    return m.typed(stored)


def reveal_variable(instance: Mapping[str, Any], name: str, who: Staff) -> Any:
    """One variable of a case `who` may see, in full; the reveal audited. KeyError when the case
    has no such variable."""
    variables = instance.get("variables") or {}
    value = variables[name]
    m = for_instance(instance, who)
    audit_read("reveal", who, resource_type="variable", resource_id=name, instance_id=instance["id"],
               patient=m.patient(variables), details={"variable": name, "kind": m.kind_of(name)})
    return value
