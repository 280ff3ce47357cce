"""Patient data for administrators (/admin/patients): find a patient's cases by record number or
phone, download everything held about the patient as JSON, anonymize or erase one finished case.

Administrators only (others: 403; not signed in: the sign-in page). Every search, export,
anonymization and erasure is written to the audit log. The record number or phone travels in
POST bodies, never in URLs (which end up in server logs and browser history).
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine import retention
from engine.errors import Conflict, InvalidInput, NotFound
from engine.notify import mask_phone
from web.access import engine, staff
from web.auth import select_locale, staff_pages

bp = Blueprint("privacy_admin", __name__, url_prefix="/admin/patients")


staff_pages(bp, admins_only=True)


def _text(exc: InvalidInput | Conflict | NotFound) -> str:
    """The engine words these messages "中文 / English": the half for the page's language."""
    zh, sep, en = exc.message.partition(" / ")
    return (en if select_locale() == "en" else zh) if sep else exc.message


def _query() -> dict:
    by = request.form.get("by", "record")
    value = (request.form.get("value") or "").strip()
    return {"by": by if by in ("record", "phone") else "record", "value": value}


def _lookup(q: dict) -> dict:
    return {"record": q["value"]} if q["by"] == "record" else {"phone": q["value"]}


def _subject(q: dict) -> dict:
    """How the audit log names the patient searched for: the record number, or the phone masked."""
    if q["by"] == "record":
        return {"patient": q["value"][:64], "details": {"by": "record"}}
    return {"patient": None, "details": {"by": "phone", "phone": mask_phone(q["value"])}}


@bp.get("")
def search_page():
    return render_template("admin/patient_search.html", query={"by": "record", "value": ""}, cases=None, error=None)


@bp.post("/search")
def search():
    q = _query()
    try:
        cases = retention.patient_cases(engine(), **_lookup(q))
    except InvalidInput as exc:
        return render_template("admin/patient_search.html", query=q, cases=None, error=_text(exc)), 422
    subject = _subject(q)
    engine().audit.record("search_patient", user=staff().username, address=request.remote_addr,
                          resource_type="patient", patient=subject["patient"],
                          details={**subject["details"], "cases": len(cases)})
    return render_template("admin/patient_search.html", query=q, cases=cases, error=None)


def _json_default(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


@bp.post("/export")
def export():
    q = _query()
    try:
        payload = retention.export_patient(engine(), user=staff().username, address=request.remote_addr,
                                           **_lookup(q))
    except InvalidInput as exc:
        return render_template("admin/patient_search.html", query=q, cases=None, error=_text(exc)), 422
    label = q["value"] if q["by"] == "record" else mask_phone(q["value"]).replace("*", "x")
    label = re.sub(r"[^A-Za-z0-9_-]", "_", label)[:40] or "patient"
    name = f"patient-{label}-{engine().clock.now():%Y%m%d}.json"
    body = json.dumps(payload, ensure_ascii=False, indent=2, default=_json_default)
    return Response(body, mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "X-Content-Type-Options": "nosniff"})


def _case_or_404(instance_id: str) -> dict:
    try:
        return retention.case_status(engine(), instance_id)
    except NotFound:
        abort(404)


@bp.get("/cases/<instance_id>")
def case_page(instance_id: str):
    return render_template("admin/patient_case.html", case=_case_or_404(instance_id), error=None, form={})


def _refused(instance_id: str, exc: InvalidInput | Conflict, form: dict):
    status = 422 if isinstance(exc, InvalidInput) else 409
    return render_template("admin/patient_case.html", case=_case_or_404(instance_id), error=_text(exc),
                           form=form), status


@bp.post("/cases/<instance_id>/anonymize")
def anonymize(instance_id: str):
    _case_or_404(instance_id)
    reason = request.form.get("reason") or ""
    try:
        result = retention.anonymize(engine(), instance_id, user=staff().username, reason=reason,
                                     address=request.remote_addr)
    except (InvalidInput, Conflict) as exc:
        return _refused(instance_id, exc, {"anonymize_reason": reason})
    if result["already"]:
        flash(_("该案例此前已匿名化，未作改动"), "warning")
    else:
        flash(_("已匿名化：患者身份信息和自由文本已替换，统计数据保留"), "success")
    return redirect(url_for(".case_page", instance_id=instance_id))


@bp.post("/cases/<instance_id>/erase")
def erase(instance_id: str):
    _case_or_404(instance_id)
    reason = request.form.get("reason") or ""
    confirmed = request.form.get("within_retention") == "yes"
    try:
        retention.erase(engine(), instance_id, user=staff().username, reason=reason,
                        within_retention=confirmed, address=request.remote_addr)
    except (InvalidInput, Conflict) as exc:
        return _refused(instance_id, exc, {"erase_reason": reason, "within_retention": confirmed})
    flash(_("已彻底删除该案例的全部记录（审计日志保留）"), "success")
    return redirect(url_for(".search_page"))
