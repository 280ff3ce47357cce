"""Staff accounts, groups and roles; and the demo staff of `make run`.

Groups are what diagrams name in `camunda:candidateGroups`; roles (kind="role") are groups that
grant rights in the service: `admin`, `process_owner`, `director`.
"""

from __future__ import annotations

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from engine.errors import Conflict, InvalidInput, NotFound
from engine.models import Group, User

ROLE_ADMIN = "admin"
ROLE_PROCESS_OWNER = "process_owner"
ROLE_DIRECTOR = "director"
ROLES = (ROLE_ADMIN, ROLE_PROCESS_OWNER, ROLE_DIRECTOR)

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
    ("external_worker", "外部任务执行器", "External-task workers", "role"),
]

# username, display name, groups — every account's password is "demo"
DEMO_USERS = [
    ("admin", "系统管理员 Admin", [ROLE_ADMIN]),
    ("owner", "流程负责人 王芳", [ROLE_PROCESS_OWNER]),
    ("director", "客服中心主任 李主任", [ROLE_DIRECTOR]),
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


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def verify_password(user: User, password: str) -> bool:
    return bool(user and user.active and check_password_hash(user.password_hash, password))


class IdentityService:
    def __init__(self, engine):
        self.engine = engine

    def authenticate(self, username: str, password: str) -> User | None:
        with self.engine.db.reader() as s:
            user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
            if user is not None and verify_password(user, password):
                _ = [g.id for g in user.groups]
                return user
            return None

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
        username = (username or "").strip()
        if not username or len(username) > 64 or not username.replace("_", "").replace(".", "").isalnum():
            raise InvalidInput("用户名只能包含字母、数字、点和下划线 / username: letters, digits, '.' and '_' only",
                               field="username")
        if len(password or "") < 4:
            raise InvalidInput("密码至少 4 位 / password: at least 4 characters", field="password")
        with self.engine.db.transaction() as s:
            if s.execute(select(User).where(User.username == username)).first():
                raise Conflict(f"用户 {username} 已存在 / user {username} exists", field="username")
            user = User(username=username, display_name=display_name or username,
                        password_hash=hash_password(password), active=True, phone=phone,
                        created_at=self.engine.clock.now())
            user.groups = self._groups(s, groups)
            s.add(user)

    def update_user(self, username: str, *, display_name: str | None = None, groups: list[str] | None = None,
                    active: bool | None = None, password: str | None = None) -> None:
        with self.engine.db.transaction() as s:
            user = s.execute(select(User).where(User.username == username)).scalar_one_or_none()
            if user is None:
                raise NotFound(f"没有用户 {username} / no user {username}")
            if display_name is not None:
                user.display_name = display_name
            if groups is not None:
                user.groups = self._groups(s, groups)
            if active is not None:
                user.active = active
            if password:
                if len(password) < 4:
                    raise InvalidInput("密码至少 4 位 / password: at least 4 characters", field="password")
                user.password_hash = hash_password(password)

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
        """Demo accounts (password "demo"); only when no user exists yet. Returns True if created."""
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
