"""Incidents and the notification outbox, for the people who keep the service running.

/admin/incidents: what the engine could not do on its own (an external task out of retries, a
BPMN error nothing catches, a step after a completion that failed), with the error and a retry
button for after the cause is fixed. Administrators and process owners may retry; the center
director may look. /admin/outbox: every text message sent or tried, with the number masked
(administrators and the director).
"""

from __future__ import annotations

import math

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from engine.errors import Conflict, InvalidInput, NotFound
from engine.external import IncidentQuery
from engine.notify import TEMPLATES, list_outbox
from web.access import Staff, engine, staff
from web.auth import login_manager

bp = Blueprint("incidents", __name__, url_prefix="/admin")

PAGE_SIZE = 50
INCIDENT_STATES = {"open": _l("待处理"), "resolved": _l("已解决"), "deleted": _l("已撤销"), "all": _l("全部")}
OUTBOX_STATUSES = {"": _l("全部"), "sent": _l("已发送"), "failed": _l("发送失败")}
TEMPLATE_NAMES = {
    "complaint_receipt": _l("投诉受理回执"),
    "callback_notice": _l("回访预告"),
    "escort_assigned": _l("陪检派单通知"),
    "overdue_escalation": _l("超时督办提醒"),
}


def _may_view_incidents(who: Staff) -> bool:
    return who.is_admin or who.is_process_owner or who.is_director


def _may_retry(who: Staff) -> bool:
    return who.is_admin or who.is_process_owner


def _may_view_outbox(who: Staff) -> bool:
    return who.is_admin or who.is_director


@bp.before_request
def _signed_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def _page() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


@bp.app_template_filter("template_name")
def template_name(name: str | None) -> str:
    return str(TEMPLATE_NAMES.get(name or "", name or "—"))


@bp.get("/incidents")
def incident_list():
    who = staff()
    if not _may_view_incidents(who):
        abort(403)
    state = request.args.get("state", "open")
    if state not in INCIDENT_STATES:
        state = "open"
    page = _page()
    service = engine().external_tasks
    rows, total = service.query_incidents(IncidentQuery(state=None if state == "all" else state,
                                                        offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE))
    incidents = []
    for row in rows:
        detail = service.get_incident(row["id"])
        incidents.append({**row, "task": detail["task"]})
    return render_template("admin/incidents.html", incidents=incidents, total=total, state=state,
                           states=INCIDENT_STATES, page=page, pages=max(1, math.ceil(total / PAGE_SIZE)),
                           may_retry=_may_retry(who), open_count=service.count_open_incidents())


@bp.post("/incidents/<incident_id>/retry")
def incident_retry(incident_id: str):
    who = staff()
    if not _may_retry(who):
        abort(403)
    try:
        retries = int(request.form.get("retries", "1"))
    except ValueError:
        retries = 0
    if not 1 <= retries <= 10:
        flash(_("重试次数须为 1 到 10"), "error")
        return redirect(url_for(".incident_list"))
    try:
        engine().external_tasks.retry_incident(incident_id, retries=retries, user=who.username)
    except NotFound:
        abort(404)
    except (Conflict, InvalidInput):
        flash(_("该事件已处理或其任务已结束，无需重试"), "warning")
        return redirect(url_for(".incident_list"))
    flash(_("已重新排队：任务将再试 %(n)s 次", n=retries), "success")
    return redirect(url_for(".incident_list"))


@bp.get("/outbox")
def outbox():
    who = staff()
    if not _may_view_outbox(who):
        abort(403)
    status = request.args.get("status", "")
    if status not in OUTBOX_STATUSES:
        status = ""
    template = request.args.get("template", "")
    if template not in TEMPLATES:
        template = ""
    search = (request.args.get("q") or "").strip()[:100]
    page = _page()
    rows, total = list_outbox(engine(), status=status or None, template=template or None, search=search or None,
                              offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    return render_template("admin/outbox.html", messages=rows, total=total, status=status, statuses=OUTBOX_STATUSES,
                           template=template, templates=TEMPLATE_NAMES, q=search, page=page,
                           pages=max(1, math.ceil(total / PAGE_SIZE)))
