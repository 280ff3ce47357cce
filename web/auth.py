"""Signing in and out, the language switch, and what every page needs: CSRF protection, Babel
(zh_CN by default, English on request), the signed-in user in the header, and friendly error
pages (no traceback ever reaches a user)."""

from __future__ import annotations

import io
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import Babel
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from markupsafe import escape
from sqlalchemy import select
from werkzeug.exceptions import HTTPException, InternalServerError

from engine.errors import EngineError
from engine.identity import IdentityService
from engine.models import Group, User, UserGroup
from web import signin
from web.access import Staff, engine
from web.errors import http_status

log = logging.getLogger(__name__)

LANGUAGES = {"zh_CN": "中文", "en": "English"}
DEFAULT_LOCALE = "zh_CN"
TRANSLATIONS_DIR = Path(__file__).parent / "translations"
# Blueprints that answer JSON and authenticate on their own (no session cookie, no CSRF token).
JSON_BLUEPRINTS = ("api", "engine_rest")
JSON_PATH_PREFIXES = ("/api/", "/engine-rest/")

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()


@dataclass(frozen=True)
class Account:
    username: str
    display_name: str
    active: bool
    password_hash: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class GroupInfo:
    id: str
    name: str
    name_en: str | None
    kind: str


# Read side of the staff directory. IdentityService's read methods hand back ORM objects that
# Database.reader() has already expired (its rollback expires them), so reading any attribute
# raises DetachedInstanceError; until that is fixed in the engine, accounts are read here with
# plain read-only statements. Writes still go through IdentityService.
def list_accounts(username: str | None = None) -> list[Account]:
    users, links = User.__table__, UserGroup.__table__
    q = select(users.c.id, users.c.username, users.c.display_name, users.c.active,
               users.c.password_hash).order_by(users.c.username)
    if username is not None:
        q = q.where(users.c.username == username)
    with engine().db.engine.connect() as conn:
        rows = conn.execute(q).all()
        memberships: dict[int, list[str]] = {}
        if rows:
            links_q = select(links.c.user_id, links.c.group_id).order_by(links.c.group_id)
            if username is not None:
                links_q = links_q.where(links.c.user_id == rows[0].id)
            for user_id, group_id in conn.execute(links_q):
                memberships.setdefault(user_id, []).append(group_id)
    return [Account(r.username, r.display_name, bool(r.active), r.password_hash,
                    tuple(memberships.get(r.id, ()))) for r in rows]


def load_account(username: str) -> Account | None:
    found = list_accounts(username)
    return found[0] if found else None


def list_groups() -> list[GroupInfo]:
    groups = Group.__table__
    with engine().db.engine.connect() as conn:
        rows = conn.execute(select(groups.c.id, groups.c.name, groups.c.name_en, groups.c.kind)
                            .order_by(groups.c.kind.desc(), groups.c.id)).all()
    return [GroupInfo(r.id, r.name, r.name_en, r.kind) for r in rows]


class StaffUser(UserMixin):
    """Flask-Login's user. Its id is the random id of a server-side session (user_sessions): the
    session ends when it is revoked (sign-out, deactivation, password reset) or idle too long,
    whatever the browser still holds."""

    def __init__(self, staff: Staff, session_token: str):
        self.staff = staff
        self._token = session_token

    def get_id(self) -> str:
        return self._token


@login_manager.user_loader
def _load_user(session_token: str) -> StaffUser | None:
    found = IdentityService(engine()).session_account(session_token)
    if found is None:
        return None
    return StaffUser(Staff(found.username, found.display_name, found.groups), session_token)


def staff_pages(blueprint: Blueprint, *, admins_only: bool = False) -> None:
    """Pages of `blueprint` need a signed-in user (administrators only, if asked) and are never kept
    in the browser cache: patient data on shared front-desk PCs must not come back with "back"
    after signing out."""

    @blueprint.before_request
    def _signed_in():
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if admins_only:
            from web.access import require_admin

            require_admin()
        return None

    @blueprint.after_request
    def _no_store(response):
        response.headers["Cache-Control"] = "no-store"
        return response


def wants_json() -> bool:
    return (request.blueprint in JSON_BLUEPRINTS or request.path.startswith(JSON_PATH_PREFIXES)
            or request.path.endswith(".json") or request.accept_mimetypes.best == "application/json")


@login_manager.unauthorized_handler
def _unauthorized():
    if wants_json():
        return jsonify(error="unauthorized", message="sign in first"), 401
    flash(_("请先登录"), "info")
    return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))


def safe_next(target: str | None, fallback: str = "/") -> str:
    """Only paths on this site (no scheme, no host, no '//')."""
    if not target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return fallback
    return target


# -- views ------------------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url)
    username = ""
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        password = request.form.get("password") or ""
        result = signin.rate_limit_form(username) or (
            signin.sign_in(username, password, interface="web") if username else signin.Refusal("password"))
        if isinstance(result, signin.SignedIn):
            lang = session.get("lang")
            session.clear()  # a fresh session (and CSRF token) for the signed-in user
            if lang:
                session["lang"] = lang
            token = IdentityService(engine()).open_session(
                username, address=request.remote_addr, user_agent=request.user_agent.string)
            login_user(StaffUser(result.staff, token))
            log.info("login %s", username)
            return redirect(next_url)
        log.info("refused login for %r: %s", username, result.reason)
        flash(_refusal_text(result), "error")
        response = current_app.make_response(
            (render_template("auth/login.html", username=username, next=next_url), result.status))
        if result.retry_after:
            response.headers["Retry-After"] = str(result.retry_after)
        return response
    return render_template("auth/login.html", username=username, next=next_url)


def _refusal_text(refusal: signin.Refusal) -> str:
    if refusal.reason == "locked":
        return _("账号已临时锁定，请 %(minutes)s 分钟后再试", minutes=refusal.minutes)
    if refusal.reason == "address":
        return _("此地址登录失败次数过多，请 %(minutes)s 分钟后再试", minutes=refusal.minutes)
    if refusal.reason == "rate":
        return _("登录尝试过于频繁，请 %(minutes)s 分钟后再试", minutes=refusal.minutes)
    return _("用户名或密码错误，或账号已停用")


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    lang = session.get("lang")
    IdentityService(engine()).revoke_session(current_user.get_id(), "logout")
    engine().audit.record("logout", user=current_user.staff.username, address=request.remote_addr,
                          resource_type="account", resource_id=current_user.staff.username,
                          details={"interface": "web"})
    logout_user()
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("您已安全退出"), "info")
    return redirect(url_for("auth.login"))


@bp.route("/lang/<code>")
def set_language(code: str):
    if code in LANGUAGES:
        session["lang"] = code
    return redirect(safe_next(request.args.get("next") or _same_site_referrer()))


def _same_site_referrer() -> str | None:
    ref = request.referrer
    if not ref:
        return None
    parts = urlsplit(ref)
    if parts.netloc != request.host:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


# -- locale -----------------------------------------------------------------------------------

def select_locale() -> str:
    lang = session.get("lang")
    return lang if lang in LANGUAGES else DEFAULT_LOCALE


def select_timezone() -> str:
    return engine().settings.timezone


_compiled: dict[tuple[str, int, int], bytes] = {}


def compile_catalogs(app: Flask, directory: Path = TRANSLATIONS_DIR) -> None:
    """Compile every messages.po into the messages.mo beside it when that is missing or differs,
    so a fresh clone (whatever the files' times) runs without a manual step. Where the package
    directory is read-only the catalogs go to a temp directory instead."""
    fallback_dir: Path | None = None
    for po in sorted(directory.glob("*/LC_MESSAGES/messages.po")):
        locale = po.parent.parent.name
        stat = po.stat()
        key = (str(po), stat.st_mtime_ns, stat.st_size)
        if key not in _compiled:
            with po.open("rb") as fh:
                catalog = read_po(fh, locale=locale)
            buffer = io.BytesIO()
            write_mo(buffer, catalog)
            _compiled[key] = buffer.getvalue()
        data, mo = _compiled[key], po.with_suffix(".mo")
        if mo.exists() and mo.read_bytes() == data:
            continue
        try:
            _write_atomically(mo, data)
        except OSError:
            fallback_dir = fallback_dir or Path(tempfile.mkdtemp(prefix="hospital-translations-"))
            _write_atomically(fallback_dir / locale / "LC_MESSAGES" / "messages.mo", data)
    if fallback_dir is not None:
        app.config["BABEL_TRANSLATION_DIRECTORIES"] = f"{fallback_dir};{directory}"


def _write_atomically(target: Path, data: bytes) -> None:
    # several workers may start at once: each writes its own file and renames it into place
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".mo.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- what every page shows -------------------------------------------------------------------

def group_names() -> dict[str, str]:
    """Group id → name in the current language (once per request)."""
    if "group_names" not in g:
        english = select_locale() == "en"
        g.group_names = {grp.id: (grp.name_en or grp.name) if english else grp.name
                         for grp in list_groups()}
    return g.group_names


def current_path() -> str:
    return request.full_path if request.query_string else request.path


def has_endpoint(endpoint: str) -> bool:
    """Whether a page exists in this app (blueprints are added by other parts of the product)."""
    return endpoint in current_app.view_functions


def _page_context() -> dict:
    ctx = {"languages": LANGUAGES, "current_locale": select_locale(), "group_names": group_names,
           "current_path": current_path, "has_endpoint": has_endpoint}
    if current_user.is_authenticated:
        ctx["staff"] = current_user.staff
    return ctx


# -- error pages ------------------------------------------------------------------------------

ERROR_TEXT = {
    400: (_l("请求有误"), _l("提交的内容无法处理，请返回后重试。")),
    401: (_l("请先登录"), _l("此页面需要登录后访问。")),
    403: (_l("无权访问"), _l("您没有访问此页面的权限。如需开通，请联系系统管理员。")),
    404: (_l("未找到"), _l("该页面不存在，或您无权查看。")),
    405: (_l("请求有误"), _l("不支持此操作方式。")),
    409: (_l("操作冲突"), _l("该记录已被他人修改，请刷新后重试。")),
    413: (_l("文件过大"), _l("上传的内容超过了大小限制。")),
    429: (_l("请求过于频繁"), _l("请稍后再试。")),
    422: (_l("无法处理"), _l("流程无法继续执行，请联系流程负责人。")),
    500: (_l("系统繁忙"), _l("系统出现了问题，您的操作未完成。请稍后重试；如果反复出现，请联系系统管理员。")),
}


def _error_response(status: int, message: str | None = None, code: str | None = None):
    title, text = ERROR_TEXT.get(status, ERROR_TEXT[500] if status >= 500 else ERROR_TEXT[400])
    if wants_json():
        return jsonify(error=code or str(status), message=message or str(text)), status
    try:
        return render_template("errors/error.html", status=status, title=title,
                               message=message or text), status
    except Exception:  # the page itself failed (e.g. the database is down): plain words, no traceback
        log.exception("error page %s could not be rendered", status)
        return (f"<!doctype html><meta charset=utf-8><title>{status}</title>"
                f"<h1>{escape(str(title))}</h1><p>{escape(str(message or text))}</p>"), status


def register_error_pages(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError):
        return _error_response(400, _("页面已过期或来源无法验证，请返回并刷新页面后重试。"), "csrf")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if exc.code and exc.code >= 500:
            return _error_response(exc.code)
        if exc.code in (301, 302, 303, 307, 308) or exc.code is None or exc.code < 400:
            return exc
        return _error_response(exc.code)

    @app.errorhandler(EngineError)
    def _engine_error(exc: EngineError):
        status = http_status(exc)
        # engine messages are for developers; users get the page's own words for the status
        log.info("engine error %s: %s", type(exc).__name__, exc)
        return _error_response(status, exc.message if wants_json() else None, exc.code)

    @app.errorhandler(InternalServerError)
    def _server_error(exc: InternalServerError):
        original = getattr(exc, "original_exception", None)
        if original is not None:
            log.error("unhandled error on %s %s", request.method, request.path, exc_info=original)
        return _error_response(500)


# -- wiring -----------------------------------------------------------------------------------

def init_app(app: Flask) -> None:
    from web import api, engine_rest, rest_auth

    signin.init_app(app)
    rest_auth.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "basic"

    # CSRF on every form; the JSON APIs (their own blueprints under /api/ and /engine-rest/,
    # authenticated per request) are exempt. Checked here rather than by Flask-WTF's default hook
    # so that a JSON blueprint added later under those prefixes is exempt too.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)
    csrf.exempt(api.bp)
    csrf.exempt(engine_rest.bp)

    @app.before_request
    def _csrf_protect() -> None:
        if not app.config.get("WTF_CSRF_ENABLED", True):
            return
        if request.blueprint in JSON_BLUEPRINTS or request.path.startswith(JSON_PATH_PREFIXES):
            return
        csrf.protect(apply_exemptions=True)

    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    compile_catalogs(app)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)

    app.context_processor(_page_context)
    register_error_pages(app)
    app.register_blueprint(bp)
