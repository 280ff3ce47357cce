"""Administration of staff accounts and groups (administrators only)."""

from __future__ import annotations

import math

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine.errors import Conflict, InvalidInput, NotFound
from engine.identity import ROLE_ADMIN, IdentityService
from web.access import engine, staff
from web.auth import list_accounts, list_groups, load_account, select_locale, staff_pages

bp = Blueprint("admin", __name__, url_prefix="/admin")


staff_pages(bp, admins_only=True)


def identity() -> IdentityService:
    return IdentityService(engine())


def _error_text(exc: InvalidInput | Conflict | NotFound) -> str:
    # The identity service words its messages "中文 / English"; show the half for the language.
    zh, sep, en = exc.message.partition(" / ")
    return (en if select_locale() == "en" else zh) if sep else exc.message


@bp.get("/")
def home():
    return redirect(url_for(".users"))


@bp.get("/users")
def users():
    return render_template("admin/users.html", users=list_accounts(), groups=list_groups(),
                           form={}, errors={})


@bp.post("/users")
def create_user():
    form = {k: (request.form.get(k) or "").strip() for k in ("username", "display_name")}
    chosen = request.form.getlist("groups")
    password = request.form.get("password") or ""
    try:
        identity().create_user(form["username"], form["display_name"], password, chosen)
    except (InvalidInput, Conflict) as exc:
        field = exc.details.get("field") or "username"
        return render_template("admin/users.html", users=list_accounts(),
                               groups=list_groups(), form={**form, "groups": chosen},
                               errors={field: _error_text(exc)}), 422
    flash(_("已创建用户 %(name)s", name=form["username"]), "success")
    return redirect(url_for(".users"))


def _user_or_404(username: str):
    account = load_account(username)
    if account is None:
        abort(404)
    return account


@bp.get("/users/<username>")
def edit_user(username: str):
    account = _user_or_404(username)
    service = identity()
    locked_for = service.locked_for(service.sign_in_state(username))
    return render_template("admin/user_edit.html", account=account, groups=list_groups(), errors={},
                           sessions=service.live_sessions(username),
                           locked_minutes=math.ceil(locked_for.total_seconds() / 60) if locked_for else None)


@bp.post("/users/<username>")
def update_user(username: str):
    account = _user_or_404(username)
    chosen = request.form.getlist("groups")
    active = request.form.get("active") == "true"
    display_name = (request.form.get("display_name") or "").strip() or account.display_name
    if username == staff().username and (not active or ROLE_ADMIN not in chosen):
        flash(_("不能停用自己的账号或取消自己的管理员权限"), "error")
        return redirect(url_for(".edit_user", username=username))
    try:
        identity().update_user(username, display_name=display_name, groups=chosen, active=active)
    except (InvalidInput, NotFound) as exc:
        flash(_error_text(exc), "error")
        return redirect(url_for(".edit_user", username=username))
    if account.active != active:
        _audit("activated" if active else "deactivated", username)
    flash(_("已保存 %(name)s 的资料", name=username), "success")
    return redirect(url_for(".users"))


@bp.post("/users/<username>/password")
def reset_password(username: str):
    _user_or_404(username)
    password = request.form.get("password") or ""
    if not password:
        flash(_("请输入新密码"), "error")
        return redirect(url_for(".edit_user", username=username))
    if password != (request.form.get("password_again") or ""):
        flash(_("两次输入的密码不一致"), "error")
        return redirect(url_for(".edit_user", username=username))
    try:
        identity().update_user(username, password=password)
    except InvalidInput as exc:
        flash(_error_text(exc), "error")
        return redirect(url_for(".edit_user", username=username))
    _audit("password_reset", username)
    flash(_("已重置 %(name)s 的密码", name=username), "success")
    return redirect(url_for(".edit_user", username=username))


@bp.post("/users/<username>/sessions/revoke")
def revoke_sessions(username: str):
    _user_or_404(username)
    count = identity().revoke_sessions(username, "admin")
    _audit("sessions_revoked", username, sessions=count)
    flash(_("已让 %(name)s 在所有设备上退出登录（%(count)s 个会话）", name=username, count=count), "success")
    if username == staff().username:
        return redirect(url_for("auth.login"))
    return redirect(url_for(".edit_user", username=username))


@bp.post("/users/<username>/unlock")
def unlock_user(username: str):
    _user_or_404(username)
    if identity().clear_failed_sign_ins(username):
        _audit("unlocked", username)
    flash(_("已解除 %(name)s 的登录锁定", name=username), "success")
    return redirect(url_for(".edit_user", username=username))


def _audit(action: str, username: str, **details) -> None:
    engine().audit.record(action, user=staff().username, address=request.remote_addr,
                          resource_type="account", resource_id=username, details=details)


@bp.get("/groups")
def groups():
    return render_template("admin/groups.html", groups=list_groups(), members=_members(),
                           form={}, errors={})


def _members() -> dict[str, int]:
    counts: dict[str, int] = {}
    for account in list_accounts():
        for group_id in account.groups:
            counts[group_id] = counts.get(group_id, 0) + 1
    return counts


@bp.post("/groups")
def create_group():
    form = {k: (request.form.get(k) or "").strip() for k in ("id", "name", "name_en", "kind")}
    kind = form["kind"] if form["kind"] in ("unit", "role") else "unit"
    try:
        identity().create_group(form["id"], form["name"], form["name_en"] or None, kind)
    except (InvalidInput, Conflict) as exc:
        return render_template("admin/groups.html", groups=list_groups(), members=_members(),
                               form=form, errors={exc.details.get("field") or "id": _error_text(exc)}), 422
    flash(_("已创建组 %(name)s", name=form["name"] or form["id"]), "success")
    return redirect(url_for(".groups"))
