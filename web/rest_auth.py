"""Who calls the REST APIs: HTTP Basic credentials of a staff account (/engine-rest and /api/v1),
or the web UI's login session (/api/v1 only).

Checking a password costs a deliberately slow hash; a client such as a Camunda script sends its
credentials with every request, so a verified pair is remembered for a minute (keyed by an HMAC,
never the password itself).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass

from flask import current_app, request

from web.access import Staff, can_see_task

CACHE_SECONDS = 60.0
CACHE_SIZE = 1000


@dataclass(frozen=True)
class ApiUser:
    """A caller of the REST APIs; what they may see follows web/access.py, like the task list."""

    staff: Staff

    @property
    def username(self) -> str:
        return self.staff.username

    @property
    def can_deploy(self) -> bool:
        """Deploy and delete deployments, cancel instances: process owners and administrators."""
        return self.staff.is_process_owner or self.staff.is_admin

    @property
    def sees_all(self) -> bool:
        return self.staff.sees_all

    @property
    def visibility(self) -> tuple[str, list[str]] | None:
        """None for those who see every task and instance, else (user, groups) to restrict by."""
        return None if self.staff.sees_all else (self.staff.username, list(self.staff.groups))

    def sees_task(self, task: dict) -> bool:
        return can_see_task(task, self.staff)


class _CredentialCache:
    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[float, ApiUser]] = {}
        self._lock = threading.Lock()

    def get(self, key: bytes) -> ApiUser | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] < time.monotonic():
                self._entries.pop(key, None)
                return None
            return entry[1]

    def put(self, key: bytes, user: ApiUser) -> None:
        with self._lock:
            if len(self._entries) >= CACHE_SIZE:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + CACHE_SECONDS, user)


def _cache() -> _CredentialCache:
    return current_app.extensions.setdefault("rest_auth_cache", _CredentialCache())


def basic_user() -> ApiUser | None:
    """The staff account named by the request's HTTP Basic credentials, if they are right."""
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username or auth.password is None:
        return None
    secret = str(current_app.config.get("SECRET_KEY") or "").encode()
    key = hmac.new(secret, f"{auth.username}\0{auth.password}".encode("utf-8", "surrogatepass"),
                   hashlib.sha256).digest()
    cached = _cache().get(key)
    if cached is not None:
        return cached
    found = _verify(auth.username, auth.password)
    if found is None:
        return None
    _cache().put(key, found)
    return found


def _verify(username: str, password: str) -> ApiUser | None:
    from web.auth import authenticate  # the one password check (as slow for unknown names)

    account = authenticate(username, password)
    if account is None or not account.active:
        return None
    return ApiUser(Staff(account.username, account.display_name, account.groups))


def session_user() -> ApiUser | None:
    """The user logged in to the web UI (Flask-Login), when the app has a login manager."""
    if getattr(current_app, "login_manager", None) is None:
        return None
    from flask_login import current_user

    if not getattr(current_user, "is_authenticated", False):
        return None
    staff = getattr(current_user, "staff", None)
    if isinstance(staff, Staff):
        return ApiUser(staff)
    username = getattr(current_user, "username", None) or current_user.get_id()
    if not username:
        return None
    groups = current_app.extensions["engine"].user_groups(username)
    return ApiUser(Staff(username, username, tuple(groups)))
