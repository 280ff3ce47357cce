"""Staff accounts, groups and roles; and the demo staff of `make run`.

Groups are what diagrams name in `camunda:candidateGroups`; roles (kind="role") are groups that
grant rights in the service: `admin`, `process_owner`, `director`.

Also the server side of signing in: web sessions (a row per signed-in browser, ended by sign-out,
deactivation or a password reset) and the temporary lock of an account name after repeated failed
sign-ins (counted in the database, so every worker sees it). New and reset passwords follow the
policy in engine/passwords.py; only the demo staff of `setup --demo` are exempt.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from engine.errors import Conflict, InvalidInput, NotFound
from engine.models import Group, LoginFailure, User, UserGroup, UserSession
from engine.passwords import check_password

ROLE_ADMIN = "admin"
ROLE_PROCESS_OWNER = "process_owner"
ROLE_DIRECTOR = "director"
# may cancel running cases (a duplicate, a withdrawn request); process owners deploy, they do not
ROLE_OPERATOR = "operator"
ROLES = (ROLE_ADMIN, ROLE_PROCESS_OWNER, ROLE_DIRECTOR, ROLE_OPERATOR)

# (id, Chinese name, English name, kind)
HOSPITAL_GROUPS = [
    ("front_desk", "前台服务", "Front desk", "unit"),
    ("complaint_office", "客户管理部（投诉）", "Customer management (complaints)", "unit"),
    ("callback_team", "客户管理部（回访）", "Customer management (callbacks)", "unit"),
    ("dispatcher", "调度员", "Dispatchers", "unit"),
    ("escort", "陪检组", "Escorts", "unit"),
    ("dept_head", "科室负责人", "Department heads", "unit"),
    ("medical_affairs", "医务科", "Medical affairs", "unit"),
    ("nursing", "护理部", "Nursing", "unit"),
    ("ward_nurse", "病区护士", "Ward nurses", "unit"),
    ("finance", "财务科", "Finance", "unit"),
    ("logistics", "后勤保障", "Logistics", "unit"),
    (ROLE_DIRECTOR, "客服中心主任", "Service center director", "role"),
    (ROLE_PROCESS_OWNER, "流程负责人", "Process owners", "role"),
    (ROLE_ADMIN, "系统管理员", "Administrators", "role"),
    (ROLE_OPERATOR, "流程运维", "Process operators", "role"),
    ("external_worker", "外部任务执行器", "External-task workers", "role"),
]

# username, display name, groups — every account's password is "demo": demo setup only, the one
# place where the password policy is bypassed (create_demo_staff / create_demo_user)
DEMO_USERS = [
    ("admin", "系统管理员 Admin", [ROLE_ADMIN]),
    ("owner", "流程负责人 王芳", [ROLE_PROCESS_OWNER]),
    ("director", "客服中心主任 李主任", [ROLE_DIRECTOR, ROLE_OPERATOR]),
    ("frontdesk", "前台 张丽", ["front_desk"]),
    ("complaints", "投诉专员 陈静", ["complaint_office"]),
    ("caller", "回访专员 刘洋", ["callback_team"]),
    ("dispatcher", "调度员 赵强", ["dispatcher"]),
    ("escort", "陪检员 孙伟", ["escort"]),
    ("head", "科室主任 周医生", ["dept_head"]),
    ("medical", "医务科 吴科长", ["medical_affairs"]),
    ("nurse", "护士长 郑护士", ["ward_nurse", "nursing"]),
    ("finance", "财务 钱会计", ["finance"]),
    ("logistics", "后勤 冯师傅", ["logistics"]),
]
DEMO_PASSWORD = "demo"


def _checked_username(username: str | None) -> str:
    username = (username or "").strip()
    if not username or len(username) > 64 or not username.replace("_", "").replace(".", "").isalnum():
        raise InvalidInput("用户名只能包含字母、数字、点和下划线 / username: letters, digits, '.' and '_' only",
                           field="username")
    return username


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def verify_password(user: User, password: str) -> bool:
    return bool(user and user.active and check_password_hash(user.password_hash, password))


class IdentityService:
    def __init__(self, engine):
        self.engine = engine

    def get_user(self, username: str) -> User | None:
        with self.engine.db.reader() as s:
            user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
            if user is not None:
                _ = [g.id for g in user.groups]
            return user

    def list_users(self) -> list[User]:
        with self.engine.db.reader() as s:
            users = list(s.execute(select(User).order_by(User.username)).scalars())
            for u in users:
                _ = [g.id for g in u.groups]
            return users

    def list_groups(self) -> list[Group]:
        with self.engine.db.reader() as s:
            return list(s.execute(select(Group).order_by(Group.kind.desc(), Group.id)).scalars())

    def create_user(self, username: str, display_name: str, password: str, groups: list[str],
                    phone: str | None = None) -> None:
        self._add_user(username, display_name, groups, phone, password=password)

    def create_demo_user(self, username: str, display_name: str, groups: list[str],
                         phone: str | None = None) -> None:
        """An account with the demo password "demo", exempt from the password policy: for the demo
        setup and test fixtures only, never for real staff."""
        self._add_user(username, display_name, groups, phone, password=None)

    def _add_user(self, username: str, display_name: str, groups: list[str], phone: str | None, *,
                  password: str | None) -> None:
        """password None: the demo password, without the policy."""
        username = _checked_username(username)
        with self.engine.db.transaction() as s:
            if s.execute(select(User).where(User.username == username)).first():
                raise Conflict(f"用户 {username} 已存在 / user {username} exists", field="username")
            if password is not None:
                check_password(password, username)
            password_hash = hash_password(DEMO_PASSWORD if password is None else password)
            user = User(username=username, display_name=display_name or username,
                        password_hash=password_hash, active=True, phone=phone,
                        created_at=self.engine.clock.now())
            user.groups = self._groups(s, groups)
            s.add(user)

    def update_user(self, username: str, *, display_name: str | None = None, groups: list[str] | None = None,
                    active: bool | None = None, password: str | None = None) -> None:
        """Deactivating the account or setting a new password ends all its sessions at once."""
        if password:
            check_password(password, username)
        with self.engine.db.transaction() as s:
            user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
            if user is None:
                raise NotFound(f"没有用户 {username} / no user {username}")
            if display_name is not None:
                user.display_name = display_name
            if groups is not None:
                user.groups = self._groups(s, groups)
            if active is not None:
                if user.active and not active:
                    self._revoke_sessions(s, user.id, "deactivated")
                user.active = active
            if password:
                user.password_hash = hash_password(password)
                self._revoke_sessions(s, user.id, "password_reset")
                # a new password is a fresh start: a lock from guesses at the old one is lifted
                s.execute(delete(LoginFailure).where(LoginFailure.username == username))

    def create_group(self, group_id: str, name: str, name_en: str | None = None, kind: str = "unit") -> None:
        group_id = (group_id or "").strip()
        if not group_id or not group_id.replace("_", "").isalnum():
            raise InvalidInput("组标识只能包含字母、数字和下划线 / group id: letters, digits and '_'", field="id")
        with self.engine.db.transaction() as s:
            if s.get(Group, group_id) is not None:
                raise Conflict(f"组 {group_id} 已存在 / group {group_id} exists", field="id")
            s.add(Group(id=group_id, name=name or group_id, name_en=name_en, kind=kind))

    @staticmethod
    def _groups(s, ids: list[str]) -> list[Group]:
        out = []
        for gid in ids or []:
            group = s.get(Group, gid)
            if group is None:
                raise InvalidInput(f"没有组 {gid} / no group {gid}", field="groups")
            out.append(group)
        return out

    def ensure_groups(self) -> None:
        with self.engine.db.transaction() as s:
            for gid, name, name_en, kind in HOSPITAL_GROUPS:
                if s.get(Group, gid) is None:
                    s.add(Group(id=gid, name=name, name_en=name_en, kind=kind))

    def create_demo_staff(self) -> bool:
        """Demo accounts (password "demo"); only when no user exists yet. Returns True if created.
        The demo password deliberately bypasses the password policy: `setup --demo` only."""
        self.ensure_groups()
        with self.engine.db.transaction() as s:
            if s.execute(select(User.id).limit(1)).first() is not None:
                return False
            now = self.engine.clock.now()
            pw = hash_password(DEMO_PASSWORD)
            for username, display, groups in DEMO_USERS:
                user = User(username=username, display_name=display, password_hash=pw, active=True,
                            created_at=now, phone="13800138000")
                user.groups = [s.get(Group, g) for g in groups]
                s.add(user)
            return True

    # -- sign-in: lockout ---------------------------------------------------------------------

    def sign_in_state(self, username: str) -> SignInState:
        """The account and its failed sign-ins, in one indexed read (two for a name that is no
        account). Called for every password check, the cached ones of HTTP Basic included."""
        username = username[:64]
        q = (select(User.id, User.display_name, User.active, User.password_hash, UserGroup.group_id,
                    LoginFailure.failures, LoginFailure.first_failed_at, LoginFailure.locked_until)
             .outerjoin(UserGroup, UserGroup.user_id == User.id)
             .outerjoin(LoginFailure, LoginFailure.username == User.username)
             .where(User.username == username).order_by(UserGroup.group_id))
        with self.engine.db.engine.connect() as conn:
            rows = conn.execute(q).all()
            if rows:
                first = rows[0]
                return SignInState(username, first.id, first.display_name, bool(first.active),
                                   first.password_hash, tuple(r.group_id for r in rows if r.group_id),
                                   self._counted(first.failures, first.first_failed_at, first.locked_until),
                                   first.locked_until)
            row = conn.execute(select(LoginFailure.failures, LoginFailure.first_failed_at,
                                      LoginFailure.locked_until)
                               .where(LoginFailure.username == username)).first()
        if row is None:
            return SignInState(username, None, "", False, "", (), 0, None)
        return SignInState(username, None, "", False, "", (),
                           self._counted(row.failures, row.first_failed_at, row.locked_until), row.locked_until)

    def _counted(self, failures: int | None, first_failed_at: datetime | None,
                 locked_until: datetime | None) -> int:
        """Failures that still count: those of the current window, none once a lock is served."""
        if not failures or first_failed_at is None:
            return 0
        now = self.engine.clock.now()
        if locked_until is not None and locked_until <= now:
            return 0
        if locked_until is None and first_failed_at < now - self._window():
            return 0
        return failures

    def locked_for(self, state: SignInState) -> timedelta | None:
        """How much longer the account name stays locked, or None."""
        if state.locked_until is None:
            return None
        left = state.locked_until - self.engine.clock.now()
        return left if left > timedelta(0) else None

    def record_failed_sign_in(self, username: str) -> datetime | None:
        """Count a failed sign-in of this name (an account or not). Returns the end of the lock
        when this failure locks the name, else None."""
        username = username[:64]
        settings = self.engine.settings
        for attempt in (1, 2):
            try:
                return self._count_failure(username, settings.login_max_failures,
                                           timedelta(minutes=settings.login_lockout_minutes))
            except IntegrityError:  # another worker inserted the name's first failure meanwhile
                if attempt == 2:
                    raise
        return None

    def _count_failure(self, username: str, max_failures: int, lockout: timedelta) -> datetime | None:
        now = self.engine.clock.now()
        with self.engine.db.transaction() as s:
            row = s.get(LoginFailure, username, with_for_update=True)
            if row is None:
                row = LoginFailure(username=username, failures=0, first_failed_at=now, last_failed_at=now)
                s.add(row)
            elif row.locked_until is not None and row.locked_until > now:
                row.last_failed_at = now  # refused while locked: the lock is not extended
                return None
            elif row.locked_until is not None or row.first_failed_at < now - self._window():
                row.failures, row.first_failed_at, row.locked_until = 0, now, None
            row.failures += 1
            row.last_failed_at = now
            locked = None
            if row.failures >= max_failures:
                row.locked_until = locked = now + lockout
            # names whose failures no longer count are forgotten (the table stays small)
            stale = now - self._window() - lockout
            s.execute(delete(LoginFailure).where(LoginFailure.username != username,
                                                 LoginFailure.last_failed_at < stale))
            return locked

    def _window(self) -> timedelta:
        return timedelta(minutes=self.engine.settings.login_failure_window_minutes)

    def clear_failed_sign_ins(self, username: str) -> bool:
        """After a successful sign-in, or an administrator's unlock. True if anything was cleared."""
        with self.engine.db.transaction() as s:
            return s.execute(delete(LoginFailure).where(LoginFailure.username == username[:64])).rowcount > 0

    # -- sign-in: sessions ----------------------------------------------------------------------

    def open_session(self, username: str, *, address: str | None = None,
                     user_agent: str | None = None) -> str:
        """A new web session of the account; returns the random id for the browser's cookie."""
        token = secrets.token_urlsafe(32)
        now = self.engine.clock.now()
        with self.engine.db.transaction() as s:
            user_id = s.execute(select(User.id).where(User.username == username)).scalar_one_or_none()
            if user_id is None:
                raise NotFound(f"没有用户 {username} / no user {username}")
            s.add(UserSession(token_hash=session_hash(token), user_id=user_id, created_at=now,
                              last_seen_at=now, address=(address or None) and address[:64],
                              user_agent=(user_agent or None) and user_agent[:256]))
            s.execute(delete(UserSession).where(UserSession.last_seen_at < now - SESSION_RETENTION))
        return token

    def session_account(self, token: str) -> SessionAccount | None:
        """The account of a live session (not revoked, not idle past the timeout, account active),
        or None. Notes the session as seen, at most once a minute."""
        if not token or len(token) > 128:
            return None
        now = self.engine.clock.now()
        idle = timedelta(minutes=self.engine.settings.session_idle_minutes)
        q = (select(UserSession.id, UserSession.last_seen_at, User.username, User.display_name,
                    UserGroup.group_id)
             .join(User, User.id == UserSession.user_id)
             .outerjoin(UserGroup, UserGroup.user_id == User.id)
             .where(UserSession.token_hash == session_hash(token), UserSession.revoked_at.is_(None),
                    UserSession.last_seen_at >= now - idle, User.active.is_(True))
             .order_by(UserGroup.group_id))
        with self.engine.db.engine.connect() as conn:
            rows = conn.execute(q).all()
        if not rows:
            return None
        first = rows[0]
        if now - first.last_seen_at >= SESSION_TOUCH:
            with self.engine.db.write_engine.begin() as conn:
                conn.execute(update(UserSession)
                             .where(UserSession.id == first.id, UserSession.last_seen_at < now - SESSION_TOUCH)
                             .values(last_seen_at=now))
        return SessionAccount(first.id, first.username, first.display_name,
                              tuple(r.group_id for r in rows if r.group_id))

    def revoke_session(self, token: str, reason: str = "logout") -> bool:
        now = self.engine.clock.now()
        with self.engine.db.transaction() as s:
            done = s.execute(update(UserSession)
                             .where(UserSession.token_hash == session_hash(token), UserSession.revoked_at.is_(None))
                             .values(revoked_at=now, revoked_reason=reason))
            return done.rowcount > 0

    def revoke_sessions(self, username: str, reason: str = "admin") -> int:
        """End every session of the account (an administrator's "sign out everywhere")."""
        with self.engine.db.transaction() as s:
            user_id = s.execute(select(User.id).where(User.username == username)).scalar_one_or_none()
            if user_id is None:
                raise NotFound(f"没有用户 {username} / no user {username}")
            return self._revoke_sessions(s, user_id, reason)

    def _revoke_sessions(self, s, user_id: int, reason: str) -> int:
        done = s.execute(update(UserSession)
                         .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
                         .values(revoked_at=self.engine.clock.now(), revoked_reason=reason))
        return done.rowcount

    def live_sessions(self, username: str) -> list[SessionInfo]:
        """The account's sessions that still sign it in, the most recently used first."""
        now = self.engine.clock.now()
        idle = timedelta(minutes=self.engine.settings.session_idle_minutes)
        q = (select(UserSession.created_at, UserSession.last_seen_at, UserSession.address,
                    UserSession.user_agent)
             .join(User, User.id == UserSession.user_id)
             .where(User.username == username, UserSession.revoked_at.is_(None),
                    UserSession.last_seen_at >= now - idle)
             .order_by(UserSession.last_seen_at.desc()))
        with self.engine.db.engine.connect() as conn:
            return [SessionInfo(r.created_at, r.last_seen_at, r.address, r.user_agent) for r in conn.execute(q)]


# a session is noted as seen at most this often (one small write a minute per active browser)
SESSION_TOUCH = timedelta(seconds=60)
# rows of sessions unused for this long are deleted at the next sign-in
SESSION_RETENTION = timedelta(days=30)


def session_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class SignInState:
    """An account name as a password check sees it; user_id is None when no account has the name."""

    username: str
    user_id: int | None
    display_name: str
    active: bool
    password_hash: str
    groups: tuple[str, ...]
    failures: int
    locked_until: datetime | None


@dataclass(frozen=True)
class SessionAccount:
    session_id: int
    username: str
    display_name: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class SessionInfo:
    created_at: datetime
    last_seen_at: datetime
    address: str | None
    user_agent: str | None
