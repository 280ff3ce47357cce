"""The staff task list: tabs, the task page with its generated form, start pages, instance pages
and the diagram data they show. Every view reads the request, asks `web.access` what the user may
see, calls one engine command, and renders or redirects."""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import MultiDict

from engine.errors import Conflict, Forbidden, InvalidInput, NotFound, ProcessError
from engine.forms import FormField, TaskForm
from engine.service import TaskQuery
from web import masking
from web.access import (
    Staff,
    authorize_assignment,
    can_act_on_task,
    can_see_instance_summary,
    can_see_task,
    can_unclaim,
    engine,
    scoped,
    staff,
    visible_instance,
    visible_task,
)
from web.auth import GroupInfo, group_names, list_accounts, list_groups, select_locale, staff_pages

bp = Blueprint("tasks", __name__)

PAGE_SIZE = 20
TABS = ("mine", "group", "due", "all")
SORTS = ("due", "priority", "created")
URGENT_PRIORITY = 80
# Readable business keys: a prefix per process, the hospital date and a daily sequence number.
BUSINESS_KEY_PREFIXES = {"complaint": "TS", "first_contact": "SW", "escort_request": "PJ",
                         "discharge_callback": "HF", "inquiry": "ZX"}
# Variables set by decision tables that tell a user what happens next, in this order.
KEY_VARIABLES = ("tier", "priorityLevel", "responsibleUnit", "firstResponseDue", "resolutionDue",
                 "feedbackDue", "callbackDue", "pickupDue", "escortGroup")
VARIABLE_LABELS = {
    "initiator": _l("发起人"),
    "tier": _l("等级"),
    "priorityLevel": _l("优先级"),
    "responsibleUnit": _l("责任部门"),
    "firstResponseDue": _l("首次响应期限"),
    "resolutionDue": _l("处理期限"),
    "feedbackDue": _l("反馈期限"),
    "callbackDue": _l("回访期限"),
    "pickupDue": _l("接送期限"),
    "escortGroup": _l("陪检组"),
    "patientName": _l("患者姓名"),
    "patientNo": _l("病历号"),
}
HISTORY_TEXT = {
    "start": _l("发起流程"),
    "task_created": _l("生成任务"),
    "claim": _l("领取了任务"),
    "unclaim": _l("退回了任务"),
    "assign": _l("转办了任务"),
    "complete": _l("完成了任务"),
    "timer": _l("定时触发"),
    "message": _l("收到消息"),
    "end": _l("流程结束"),
    "cancel": _l("流程已取消"),
    "decision": _l("决策"),
    "anonymized": _l("已按保存期限匿名化"),
}
STATUS_TEXT = {"active": _l("办理中"), "completed": _l("已结束"), "cancelled": _l("已取消"),
               "open": _l("待办")}
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
TRUE_WORDS = ("true", "1", "on", "yes")


staff_pages(bp)


# -- small lookups (once per request) -------------------------------------------------------

def now() -> datetime:
    return engine().clock.now()


def user_names() -> dict[str, str]:
    if "user_names" not in g:
        g.user_names = {a.username: a.display_name for a in list_accounts()}
    return g.user_names


def process_catalog() -> dict[str, dict]:
    """Process key → newest deployed definition."""
    if "process_catalog" not in g:
        g.process_catalog = {d["key"]: d for d in engine().list_definitions(latest_only=True)}
    return g.process_catalog


def process_name(key: str) -> str:
    d = process_catalog().get(key)
    return (d or {}).get("name") or key


# -- template helpers -----------------------------------------------------------------------

@bp.app_template_filter("localtime")
def localtime(value: datetime | str | None, fmt: str | None = None) -> str:
    """A moment in the hospital's time zone; the year only when it is not this year."""
    if value in (None, ""):
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    tz = engine().settings.tz
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    local = value.astimezone(tz)
    if fmt is None:
        fmt = "%m-%d %H:%M" if local.year == now().astimezone(tz).year else "%Y-%m-%d %H:%M"
    return local.strftime(fmt)


def _span(minutes: int) -> tuple[int, int, int]:
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return days, hours, mins


@bp.app_template_filter("countdown")
def countdown(due: datetime | None) -> str:
    """"剩余 1小时20分" before the due time, "超时 35分钟" after it."""
    if due is None:
        return _("无时限")
    seconds = (due - now()).total_seconds()
    if seconds > 0:
        d, h, m = _span(math.ceil(seconds / 60) if seconds < 60 else int(seconds // 60))
        if d:
            return _("剩余 %(d)s天%(h)s小时", d=d, h=h) if h else _("剩余 %(d)s天", d=d)
        if h:
            return _("剩余 %(h)s小时%(m)s分", h=h, m=m) if m else _("剩余 %(h)s小时", h=h)
        return _("剩余 %(m)s分钟", m=m)
    d, h, m = _span(int(-seconds // 60))
    if d:
        return _("超时 %(d)s天%(h)s小时", d=d, h=h) if h else _("超时 %(d)s天", d=d)
    if h:
        return _("超时 %(h)s小时%(m)s分", h=h, m=m) if m else _("超时 %(h)s小时", h=h)
    return _("超时 %(m)s分钟", m=m)


@bp.app_template_filter("user_name")
def user_name(username: str | None) -> str:
    if not username:
        return ""
    return user_names().get(username, username)


@bp.app_template_filter("group_list")
def group_list(ids: list[str] | None) -> str:
    names = group_names()
    return "、".join(names.get(i, i) for i in ids or [])


@bp.app_template_filter("status_text")
def status_text(status: str) -> str:
    return str(STATUS_TEXT.get(status, status))


@bp.app_template_global("field_kind")
def field_kind(f: FormField) -> str:
    """How a form field type is rendered: the one place that decides it."""
    if f.type == "long":
        return "number"
    if f.type == "boolean":
        return "checkbox"
    if f.type == "date":
        return "date"
    if f.type == "enum":
        return "select"
    props = {k.lower(): str(v).lower() for k, v in (f.properties or {}).items()}
    if props.get("multiline") in TRUE_WORDS or props.get("textarea") in TRUE_WORDS \
            or props.get("widget") == "textarea" or "rows" in props \
            or (f.max_length is not None and f.max_length > 200):
        return "textarea"
    return "text"


@bp.app_template_global("number_attr")
def number_attr(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def format_value(value: Any, f: FormField | None = None) -> str:
    """A variable as a person reads it."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return _("是") if value else _("否")
    if f is not None and f.type == "enum":
        return dict(f.options).get(str(value), str(value))
    if isinstance(value, datetime):
        return localtime(value)
    if isinstance(value, str) and ISO_DATETIME.match(value):
        return localtime(value, "%Y-%m-%d %H:%M")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# -- the task list --------------------------------------------------------------------------

def tabs_for(who: Staff) -> tuple[str, ...]:
    return TABS if who.sees_all else TABS[:3]


def tab_query(tab: str, who: Staff, *, search: str | None = None, process_key: str | None = None,
              sort: str = "due", offset: int = 0, limit: int = PAGE_SIZE) -> TaskQuery:
    q = TaskQuery(search=search or None, process_key=process_key or None, sort=sort, offset=offset,
                  limit=limit)
    if tab == "mine":
        q.assignee = who.username
    elif tab == "group":
        # offered to me or my groups and not yet claimed (even for those who see everything)
        q.unassigned = True
        q.visible_to_user = who.username
        q.visible_to_groups = list(who.groups)
    elif tab == "due":
        q.sla_states = ["due_soon", "overdue"]
        scoped(q, who)
    elif tab == "all":
        scoped(q, who)
    return q


@bp.get("/")
def index():
    who = staff()
    tabs = tabs_for(who)
    search = (request.args.get("q") or "").strip()[:100]
    process_key = request.args.get("process") or ""
    sort = request.args.get("sort") if request.args.get("sort") in SORTS else "due"
    page = max(1, request.args.get("page", 1, type=int) or 1)

    counts = {t: engine().count_tasks(tab_query(t, who, search=search, process_key=process_key))
              for t in tabs}
    tab = request.args.get("tab")
    if tab not in tabs:
        tab = "mine" if counts["mine"] or not counts["group"] else "group"
    pages = max(1, math.ceil(counts[tab] / PAGE_SIZE))
    page = min(page, pages)
    rows = engine().list_tasks(tab_query(tab, who, search=search, process_key=process_key, sort=sort,
                                         offset=(page - 1) * PAGE_SIZE))
    instance_ids = list({t["instance_id"] for t in rows})
    summaries = {i["id"]: i["summary"] for i in engine().list_instances(instance_ids=instance_ids,
                                                                        limit=len(instance_ids) or 1)}
    summaries = masking.mask_summaries(summaries, rows, who)  # lists never show personal data in full
    args = {"tab": tab, "q": search, "process": process_key, "sort": sort}
    return render_template("tasks/list.html", tabs=tabs, tab=tab, counts=counts, rows=rows,
                           summaries=summaries, search=search, process_key=process_key, sort=sort,
                           page=page, pages=pages, args=args, processes=process_catalog(),
                           process_name=process_name, urgent_priority=URGENT_PRIORITY)


@bp.post("/next")
def next_task():
    """Claim the most urgent task offered to me; when a colleague is quicker, take the next."""
    who = staff()
    tried: set[str] = set()
    for _round in range(3):
        candidates = [t for t in engine().list_tasks(tab_query("group", who, limit=10 + len(tried)))
                      if t["id"] not in tried]
        if not candidates:
            break
        for task in candidates:
            tried.add(task["id"])
            try:
                engine().claim(task["id"], who.username)
            except (Conflict, NotFound):
                continue
            flash(_("已领取：%(name)s（%(key)s）", name=task["name"], key=task["business_key"] or "—"),
                  "success")
            return redirect(url_for(".task_page", task_id=task["id"]))
    flash(_("当前没有可领取的任务"), "info")
    return redirect(url_for(".index", tab="group"))


# -- forms ----------------------------------------------------------------------------------

def read_submission(form: TaskForm, data: MultiDict) -> dict[str, Any]:
    """Raw values of the form's editable fields as the engine's schema takes them."""
    out: dict[str, Any] = {}
    for f in form.fields:
        if f.readonly:
            continue
        if f.type == "boolean":
            sent = data.getlist(f.id)
            out[f.id] = bool(sent) and sent[-1].lower() in TRUE_WORDS
            continue
        if f.id not in data:
            continue
        value = data.get(f.id, "")
        if f.type in ("long", "date"):
            value = value.strip()
            out[f.id] = value if value != "" else None
            if value == "" and f.required:
                out.pop(f.id)
        else:
            out[f.id] = value
    return out


def initial_values(form: TaskForm, variables: dict[str, Any]) -> dict[str, Any]:
    """What the inputs show first: the current variable value, else the field's default."""
    values: dict[str, Any] = {}
    for f in form.fields:
        value = variables.get(f.id, f.default)
        values[f.id] = input_value(f, value)
    return values


def input_value(f: FormField, value: Any) -> Any:
    if f.type == "boolean":
        if isinstance(value, str):
            return value.lower() in TRUE_WORDS
        return bool(value)
    if value is None:
        return ""
    if f.type == "date":
        if isinstance(value, datetime | date):
            return value.isoformat()[:10]
        return str(value)[:10]
    return str(value)


def submitted_values(form: TaskForm, data: MultiDict, fallback: dict[str, Any]) -> dict[str, Any]:
    """The values a user typed, to show them again next to the errors."""
    values = dict(fallback)
    for f in form.fields:
        if f.readonly:
            continue
        if f.type == "boolean":
            sent = data.getlist(f.id)
            values[f.id] = bool(sent) and sent[-1].lower() in TRUE_WORDS
        elif f.id in data:
            values[f.id] = data.get(f.id, "")
    return values


def field_message(f: FormField, raw: Any, engine_message: str) -> str:
    """A message in the user's language for a field the engine's schema refused."""
    text = "" if raw is None else str(raw).strip()
    if text == "":
        return _("此项为必填项") if f.required else engine_message
    if f.type == "long":
        try:
            number = int(text)
        except ValueError:
            return _("请输入整数")
        low, high = f.minimum, f.maximum
        if (low is not None and number < low) or (high is not None and number > high):
            if low is not None and high is not None:
                return _("请输入 %(min)s 到 %(max)s 之间的整数", min=number_attr(low), max=number_attr(high))
            if low is not None:
                return _("不能小于 %(min)s", min=number_attr(low))
            return _("不能大于 %(max)s", max=number_attr(high))
    if f.type == "date":
        return _("请输入有效日期（年-月-日）")
    if f.type == "enum":
        return _("请从列表中选择")
    if f.type == "string":
        if f.min_length is not None and len(str(raw)) < f.min_length:
            return _("至少填写 %(n)s 个字", n=f.min_length)
        if f.max_length is not None and len(str(raw)) > f.max_length:
            return _("最多填写 %(n)s 个字（当前 %(count)s 个）", n=f.max_length, count=len(str(raw)))
    return engine_message


def field_errors(form: TaskForm, raw: dict[str, Any], exc: InvalidInput) -> dict[str, str]:
    by_id = {f.id: f for f in form.fields}
    errors = {}
    for name, message in (exc.details.get("fields") or {}).items():
        f = by_id.get(name)
        errors[name] = field_message(f, raw.get(name), message) if f else message
    return errors


def form_labels(*forms: TaskForm) -> tuple[dict[str, str], dict[str, FormField]]:
    """Labels of variables: the forms' own labels first (in form order), then the known names."""
    labels: dict[str, str] = {}
    fields: dict[str, FormField] = {}
    for form in forms:
        for f in form.fields:
            labels.setdefault(f.id, f.label)
            fields.setdefault(f.id, f)
    for name, label in VARIABLE_LABELS.items():
        labels.setdefault(name, str(label))
    return labels, fields


def variable_rows(variables: dict[str, Any], labels: dict[str, str],
                  fields: dict[str, FormField]) -> list[dict]:
    """Instance variables in the order the forms name them, labelled where a label is known."""
    order = {name: i for i, name in enumerate(labels)}
    rows = []
    for name in sorted(variables, key=lambda n: (order.get(n, len(order)), n)):
        value = variables[name]
        shown = user_name(value) if name == "initiator" else format_value(value, fields.get(name))
        rows.append({"name": name, "label": labels.get(name, name), "value": shown,
                     "labelled": name in labels})
    return rows


def timeline(history: list[dict]) -> list[dict]:
    """The history a person wants to read: who did what and when (engine steps left out)."""
    rows = []
    for h in history:
        action = h["action"]
        details = h.get("details") or {}
        if action == "element":
            if "BusinessRule" not in (details.get("type") or "") and "Decision" not in (details.get("type") or ""):
                continue
            action = "decision"
        elif action not in HISTORY_TEXT:
            continue
        extra = ""
        if action == "task_created":
            who = details.get("assignee")
            groups = details.get("candidate_groups") or []
            extra = user_name(who) if who else group_list(groups)
            if details.get("due_at"):
                extra += " · " + _("期限 %(due)s", due=localtime(details["due_at"]))
        elif action == "assign":
            extra = _("转给 %(name)s", name=user_name(details.get("assignee")) or "—")
        elif action == "cancel" and details.get("reason"):
            extra = details["reason"]
        elif action == "message":
            extra = details.get("message") or ""
        elif action == "start" and details.get("business_key"):
            extra = details["business_key"]
        rows.append({"at": h["at"], "user": user_name(h.get("user")) if h.get("user") else "",
                     "action": action, "text": str(HISTORY_TEXT[action]), "element": h.get("element_name") or "",
                     "extra": extra})
    return rows


def delegate_candidates(task: dict) -> list[tuple[str, str]]:
    """Active colleagues of the task's candidate groups (and its candidate users)."""
    groups = set(task["candidate_groups"] or [])
    users = set(task["candidate_users"] or [])
    out = []
    for a in list_accounts():
        if a.active and (a.username in users or groups & set(a.groups)):
            out.append((a.username, a.display_name))
    return out


def flash_next_steps(result: dict) -> None:
    """What happens next, from a completed command's result (engine `complete`: the instance's
    status and its open tasks after the command); no read of its own."""
    if result["status"] != "active":
        flash(_("流程已结束：%(status)s", status=status_text(result["status"])), "info")
        return
    me = staff()
    for t in result["next_tasks"]:
        if t["assignee"]:
            to = me.display_name if t["assignee"] == me.username else user_name(t["assignee"])
        else:
            to = known_group_list(t["candidate_groups"])
        due = _("，期限 %(due)s", due=localtime(t["due_at"])) if t["due_at"] else ""
        flash(_("下一步：%(task)s → %(to)s%(due)s", task=t["name"], to=to or "—", due=due), "info")


def known_group_list(ids: list[str] | None) -> str:
    """`group_list` without a read per click: a group is created once and never renamed or
    removed, so names once read stay right for the life of the app; an id not seen yet reads them
    again."""
    known: dict[str, GroupInfo] = current_app.extensions.setdefault("known_groups", {})
    if any(i not in known for i in ids or []):
        known.update({grp.id: grp for grp in list_groups()})
    english = select_locale() == "en"
    names = [((known[i].name_en or known[i].name) if english else known[i].name) if i in known else i
             for i in ids or []]
    return "、".join(names)


# -- the task page --------------------------------------------------------------------------

def _render_task(task: dict, *, data: MultiDict | None = None, errors: dict[str, str] | None = None,
                 alert: str | None = None, status: int = 200, audit: bool = False):
    who = staff()
    instance = visible_instance(task["instance_id"])
    form = engine().task_form(task["id"])
    start_form = engine().start_form(definition_id=task["definition_id"])
    masker = masking.for_instance(instance, who)  # personal data in full only for the step that needs it
    variables = masker.values(instance["variables"])
    if audit:
        masking.audit_read("read_task", who, resource_type="task", resource_id=task["id"],
                           instance_id=task["instance_id"], patient=masker.patient(instance["variables"]))
    completed_values = {}
    if task["status"] == "completed":
        for h in instance["history"]:
            if h["action"] == "complete" and h.get("task_id") == task["id"]:
                completed_values = masker.values((h.get("details") or {}).get("variables") or {})
    values = initial_values(form, {**variables, **completed_values})
    if data is not None:
        values = submitted_values(form, data, values)
    labels, fields = form_labels(start_form, form)
    mine = task["assignee"] == who.username
    editable = task["status"] == "open" and mine
    readonly_values = {f.id: format_value(variables.get(f.id, f.default), f) for f in form.fields}
    return render_template(
        "tasks/task.html", task=task, instance=instance, form=form, values=values, errors=errors or {},
        readonly_values=readonly_values, editable=editable, mine=mine,
        can_act=can_act_on_task(task), can_unclaim=bool(task["assignee"]) and can_unclaim(task, who),
        delegates=delegate_candidates(task) if can_act_on_task(task) else [],
        variables=masking.mark_rows(variable_rows(variables, labels, fields), masker, instance),
        timeline=timeline(instance["history"]), process_name=process_name(task["process_key"]), alert=alert), status


@bp.get("/tasks/<task_id>")
def task_page(task_id: str):
    return _render_task(visible_task(task_id), audit=True)


def conflict_message(task_id: str) -> str:
    """What happened to a task a command just lost a race on, in words for the user."""
    me = staff().username
    try:
        task = engine().get_task(task_id)
    except NotFound:
        return _("该任务已不存在")
    if task["status"] == "completed":
        if task["completed_by"] == me:
            return _("您已完成该任务")
        return _("该任务已被 %(name)s 完成", name=user_name(task["completed_by"]) or _("同事"))
    if task["status"] != "open":
        return _("该任务已不再需要办理（流程已取消或已变更）")
    if task["assignee"] and task["assignee"] != me:
        return _("该任务已被 %(name)s 领取", name=user_name(task["assignee"]))
    if not task["assignee"]:
        return _("请先领取该任务再办理")
    return _("同事刚刚更新了该流程，请刷新后重试")


def _back_to_task(task_id: str):
    return redirect(url_for(".task_page", task_id=task_id))


@bp.post("/tasks/<task_id>/claim")
def claim(task_id: str):
    task = visible_task(task_id)
    if not can_act_on_task(task):
        flash(conflict_message(task_id), "warning")
        return _back_to_task(task_id)
    try:
        engine().claim(task_id, staff().username)
    except Conflict:
        flash(conflict_message(task_id), "warning")
        return _back_to_task(task_id)
    flash(_("已领取任务，请办理"), "success")
    return _back_to_task(task_id)


@bp.post("/tasks/<task_id>/unclaim")
def unclaim(task_id: str):
    task = visible_task(task_id)
    who = staff()
    try:
        authorize_assignment(task, None, who)
    except Forbidden:
        abort(403)
    try:
        engine().unclaim(task_id, who.username)
    except Conflict:
        flash(conflict_message(task_id), "warning")
        return _back_to_task(task_id)
    flash(_("已退回组任务，同组同事可以领取"), "info")
    return redirect(url_for(".index"))


@bp.post("/tasks/<task_id>/assign")
def assign(task_id: str):
    task = visible_task(task_id)
    assignee = (request.form.get("assignee") or "").strip()
    allowed = {u for u, _name in delegate_candidates(task)}
    if not can_act_on_task(task):
        flash(conflict_message(task_id), "warning")
        return _back_to_task(task_id)
    if assignee not in allowed:
        flash(_("请选择本任务所属组的同事"), "error")
        return _back_to_task(task_id)
    try:
        authorize_assignment(task, assignee, staff())
    except Forbidden:
        flash(_("该任务已被 %(name)s 领取，只有本人、客服中心主任或管理员可以转交", name=user_name(task["assignee"])),
              "error")
        return _back_to_task(task_id)
    except InvalidInput:
        flash(_("请选择本任务所属组的同事"), "error")
        return _back_to_task(task_id)
    try:
        engine().assign(task_id, assignee, staff().username)
    except Conflict:
        flash(conflict_message(task_id), "warning")
        return _back_to_task(task_id)
    except InvalidInput:
        flash(_("请选择本任务所属组的同事"), "error")
        return _back_to_task(task_id)
    flash(_("已转交给 %(name)s", name=user_name(assignee)), "success")
    if assignee == staff().username:
        return _back_to_task(task_id)
    return redirect(url_for(".index"))


@bp.post("/tasks/<task_id>/complete")
def complete(task_id: str):
    """One command: it checks that the task is open and the user's (anyone else's task answers
    409 or 404 below, as before), reads the form and returns the next steps. Reads of the page
    happen only when it is shown again."""
    me = staff().username
    posted: dict[str, Any] = {}

    def submission(task: dict, form: TaskForm) -> dict[str, Any]:
        posted.update(task=task, form=form, raw=read_submission(form, request.form))
        return posted["raw"]

    try:
        result = engine().complete(task_id, user=me, require_assignee=True, submission=submission)
    except NotFound:
        abort(404)
    except InvalidInput as exc:
        task = visible_task(task_id)
        form = posted.get("form") or engine().task_form(task_id)
        raw = posted["raw"] if "raw" in posted else read_submission(form, request.form)
        errors = field_errors(form, raw, exc)
        alert = _("表单有误，请按提示修改后再提交") if errors else exc.message
        return _render_task(task, data=request.form, errors=errors, alert=alert, status=422)
    except Conflict:
        visible_task(task_id)  # a task the user may not see stays a 404, whatever its state
        message = conflict_message(task_id)
        fresh = engine().get_task(task_id)
        if fresh["status"] == "completed" and fresh["completed_by"] == me:
            flash(message, "info")
            return redirect(url_for(".index"))
        # keep what the user typed on the page, with the reason it was not saved
        return _render_task(fresh, data=request.form, alert=message, status=409)
    except ProcessError as exc:
        task = visible_task(task_id)
        alert = _("流程无法继续，您填写的内容尚未保存。请联系流程负责人。（%(reason)s）", reason=exc.message)
        return _render_task(task, data=request.form, alert=alert, status=422)
    task = posted["task"]
    flash(_("已完成：%(name)s（%(key)s）", name=task["name"], key=task["business_key"] or "—"), "success")
    flash_next_steps(result)
    return redirect(url_for(".index"))


# -- start pages ----------------------------------------------------------------------------

def key_prefix(process_key: str) -> str:
    if process_key in BUSINESS_KEY_PREFIXES:
        return BUSINESS_KEY_PREFIXES[process_key]
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", process_key) if p]
    letters = "".join(p[0] for p in parts).upper() if len(parts) > 1 else process_key[:2].upper()
    return letters or "WF"


def new_business_key(process_key: str) -> str:
    """e.g. TS-20261122-0001: unique, readable, numbered per process and hospital day."""
    day = now().astimezone(engine().settings.tz).strftime("%Y%m%d")
    stem = f"{key_prefix(process_key)}-{day}-"
    pattern = re.compile(re.escape(stem) + r"(\d+)$")
    taken = [int(m.group(1)) for i in engine().list_instances(search=stem, limit=1000)
             if (m := pattern.match(i["business_key"] or ""))]
    number = max(taken, default=0) + 1
    while engine().list_instances(business_key=f"{stem}{number:04d}", limit=1):
        number += 1
    return f"{stem}{number:04d}"


@bp.get("/start")
def start_menu():
    return render_template("tasks/start_menu.html", definitions=start_menu_items())


def _start_form_or_404(process_key: str) -> tuple[TaskForm, dict]:
    definition = process_catalog().get(process_key)
    if definition is None:
        abort(404)
    try:
        return engine().start_form(definition_id=definition["id"]), definition
    except NotFound:
        abort(404)


@bp.route("/start/<process_key>", methods=["GET", "POST"])
def start(process_key: str):
    form, definition = _start_form_or_404(process_key)
    values = initial_values(form, {})
    errors: dict[str, str] = {}
    alert = None
    status = 200
    if request.method == "POST":
        values = submitted_values(form, request.form, values)
        raw = read_submission(form, request.form)
        try:
            variables = form.validate(raw)
            business_key = (variables.get("businessKey") or "").strip() or new_business_key(process_key)
            if any(f.id == "businessKey" for f in form.fields):
                variables["businessKey"] = business_key  # the diagram may read it (as Camunda forms do)
            instance = engine().start(definition_id=definition["id"], business_key=business_key,
                                      variables=variables, user=staff().username)
        except InvalidInput as exc:
            errors = field_errors(form, raw, exc)
            alert = _("表单有误，请按提示修改后再提交") if errors else exc.message
            status = 422
        except ProcessError as exc:
            alert = _("流程无法启动，请联系流程负责人。（%(reason)s）", reason=exc.message)
            status = 422
        else:
            flash(_("已登记，业务编号 %(key)s", key=business_key), "success")
            return redirect(url_for(".instance_page", instance_id=instance["id"], started=1))
    return render_template("tasks/start.html", definition=definition, form=form, values=values,
                           errors=errors, alert=alert, readonly_values={}), status


@bp.get("/start/<process_key>/diagram.json")
def process_diagram(process_key: str):
    definition = process_catalog().get(process_key)
    if definition is None:
        abort(404)
    _name, xml = engine().definition_xml(definition["id"])
    return jsonify(xml=xml.decode("utf-8"), path=[], active=[], status="definition")


# -- instance page --------------------------------------------------------------------------

@bp.get("/instances/<instance_id>")
def instance_page(instance_id: str):
    instance = visible_instance(instance_id)
    forms = [engine().start_form(definition_id=instance["definition_id"])]
    seen = set()
    for t in instance["tasks"]:
        if t["element_id"] not in seen:
            seen.add(t["element_id"])
            forms.append(engine().task_form(t["id"]))
    labels, fields = form_labels(*forms)
    masker = masking.for_instance(instance, staff())  # personal data in full only for the step that needs it
    variables = masker.values(instance["variables"])
    masking.audit_read("read_instance", staff(), resource_type="instance", resource_id=instance_id,
                       instance_id=instance_id, patient=masker.patient(instance["variables"]))
    key_values = [{"name": k, "label": labels.get(k, k), "value": format_value(variables[k], fields.get(k))}
                  for k in KEY_VARIABLES if variables.get(k) not in (None, "")]
    related = []
    if instance["parent_instance_id"]:
        related += [("parent", i) for i in engine().list_instances(instance_ids=[instance["parent_instance_id"]])]
    related += [("child", c) for c in instance["children"]]
    related = [(kind, i, process_name(i["process_key"])) for kind, i in related if can_see_instance_summary(i)]
    open_tasks = [t for t in instance["tasks"] if t["status"] == "open"]
    done_tasks = [t for t in instance["tasks"] if t["status"] != "open"]
    visible_task_ids = {t["id"] for t in instance["tasks"] if can_see_task(t)}
    return render_template(
        "tasks/instance.html", instance=instance, open_tasks=open_tasks, done_tasks=done_tasks,
        visible_task_ids=visible_task_ids,
        key_values=key_values, variables=masking.mark_rows(variable_rows(variables, labels, fields), masker, instance),
        timeline=timeline(instance["history"]), related=related, started=request.args.get("started") == "1",
        process_name=process_name(instance["process_key"]))


@bp.get("/instances/<instance_id>/diagram.json")
def instance_diagram(instance_id: str):
    instance = visible_instance(instance_id)
    _name, xml = engine().definition_xml(instance["definition_id"])
    return jsonify(xml=xml.decode("utf-8"), path=instance["path"], status=instance["status"],
                   active=[a["element_id"] for a in instance["active"]])


def start_menu_items() -> list[dict]:
    return sorted(process_catalog().values(), key=lambda d: (d.get("name") or d["key"]))


@bp.app_context_processor
def _task_list_context() -> dict:
    return {"status_text": status_text, "start_menu_items": start_menu_items}
