"""The audit log's pages: the administrators' list of reads and security events (/admin/audit),
and the "显示" (show) action that reveals one masked value of a case and is itself audited.

Nothing here (nor anywhere in the app) edits or deletes an audit event.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta

from flask import Blueprint, abort, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from engine.audit import AuditQuery
from web import masking
from web.access import engine, require_admin, staff, visible_instance
from web.auth import staff_pages

bp = Blueprint("audit", __name__)

PAGE_SIZE = 50
MAX_FILTER = 64
ACTION_TEXT = {
    "read_task": _l("查看任务"),
    "read_instance": _l("查看案件"),
    "read_variables": _l("读取流程变量"),
    "reveal": _l("显示完整信息"),
    "export": _l("导出"),
    "login": _l("登录"),
    "login_failed": _l("登录失败"),
    "logout": _l("退出登录"),
    "locked": _l("账户临时锁定"),
    "unlocked": _l("解除锁定"),
    "sessions_revoked": _l("强制下线"),
    "password_reset": _l("重置密码"),
    "deactivated": _l("停用账号"),
    "activated": _l("启用账号"),
    "user_created": _l("新建账号"),
    "search_patient": _l("查找患者"),
    "anonymize": _l("匿名化"),
    "erase": _l("删除个人信息"),
}


staff_pages(bp)


# ---------------------------------------------------------------------------- reveal ---------
@bp.post("/instances/<instance_id>/reveal/<name>")
def reveal(instance_id: str, name: str):
    """One value of a case the user may see, in full; written to the audit log as `reveal`."""
    from web.tasks import format_value

    who = staff()
    instance = visible_instance(instance_id)  # 404 for a case the user may not see
    try:
        value = masking.reveal_variable(instance, name, who)
    except KeyError:
        abort(404)
    text = format_value(value)
    if request.headers.get("X-Requested-With") or request.accept_mimetypes.best == "application/json":
        return jsonify(name=name, value=value, text=text)
    return render_template("tasks/reveal.html", instance=instance, name=name, text=text)


# --------------------------------------------------------------------------- the list --------
class FilterError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _day(field: str, text: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FilterError(field, _("日期格式应为 年-月-日（如 2026-03-02）")) from None


def _text(field: str) -> str:
    value = (request.args.get(field) or "").strip()
    if len(value) > MAX_FILTER:
        raise FilterError(field, _("最多 %(n)s 个字符", n=MAX_FILTER))
    return value


@bp.get("/admin/audit")
def audit_list():
    require_admin()
    tz = engine().settings.tz
    filters = {k: (request.args.get(k) or "").strip()[:100] for k in ("patient", "user", "action", "since", "until")}
    errors: dict[str, str] = {}
    rows: list[dict] = []
    total = 0
    page = max(1, request.args.get("page", 1, type=int) or 1)
    try:
        since = _day("since", filters["since"])
        until = _day("until", filters["until"])
        query = AuditQuery(patient=_text("patient") or None, user=_text("user") or None,
                           action=_text("action") or None,
                           since=datetime.combine(since, time(), tz) if since else None,
                           until=datetime.combine(until + timedelta(days=1), time(), tz) if until else None,
                           offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    except FilterError as exc:
        errors[exc.field] = exc.message
    else:
        rows, total = engine().audit.query(query)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    status = 400 if errors else 200
    args = {k: v for k, v in filters.items() if v}
    return render_template("admin/audit.html", rows=rows, total=total, page=page, pages=pages, args=args,
                           filters=filters, errors=errors, actions=ACTION_TEXT), status
