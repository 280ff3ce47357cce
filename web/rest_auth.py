"""Who calls the REST APIs: HTTP Basic credentials of a staff account (/engine-rest and /api/v1),
or the web UI's login session (/api/v1 only).

Checking a password costs a deliberately slow hash; a client such as a Camunda script sends its
credentials with every request, so a verified pair is remembered for a minute (keyed by an HMAC,
never the password itself) together with a fingerprint of the password hash it matched. The
account itself is read on every request (one indexed read): a deactivated, locked or re-passworded
account stops working on the next request. Failed checks count towards the lockout and the
throttling of web/signin.py, like failed sign-ins on the form.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, jsonify, request

from engine.access import Caller
from web.access import Staff, can_see_task
from web.signin import Refusal, SignedIn, fingerprint, sign_in

CACHE_SECONDS = 60.0
CACHE_SIZE = 1000
API_PREFIXES = ("/api/", "/engine-rest/")


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

    @property
    def caller(self) -> Caller:
        return self.staff.caller


class _CredentialCache:
    """HMAC of name and password → (expiry, fingerprint of the password hash they matched)."""

    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, key: bytes) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] < time.monotonic():
                self._entries.pop(key, None)
                return None
            return entry[1]

    def put(self, key: bytes, fingerprint: str) -> None:
        with self._lock:
            if len(self._entries) >= CACHE_SIZE:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + CACHE_SECONDS, fingerprint)

    def drop(self, key: bytes) -> None:
        with self._lock:
            self._entries.pop(key, None)


def _cache() -> _CredentialCache:
    return current_app.extensions.setdefault("rest_auth_cache", _CredentialCache())


def init_app(app: Flask) -> None:
    """Checks HTTP Basic credentials sent to the APIs before their blueprints run, so that a
    locked account or a throttled address gets 429 with Retry-After (the blueprints' own error
    handlers would drop the header)."""
    app.before_request(_check_basic_credentials)


def _check_basic_credentials() -> Response | None:
    if not request.path.startswith(API_PREFIXES) or _credentials() is None:
        return None
    result = _sign_in()
    g.basic_sign_in = result
    if isinstance(result, Refusal) and result.status == 429:
        return _too_many_attempts(result)
    return None


def _credentials() -> tuple[str, str] | None:
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username or auth.password is None:
        return None
    return auth.username, auth.password


def _sign_in() -> SignedIn | Refusal | None:
    credentials = _credentials()
    if credentials is None:
        return None
    username, password = credentials
    secret = str(current_app.config.get("SECRET_KEY") or "").encode()
    key = hmac.new(secret, f"{username}\0{password}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    result = sign_in(username, password, interface="basic", verified_fingerprint=_cache().get(key))
    if isinstance(result, SignedIn):
        if result.verified:
            _cache().put(key, fingerprint(result.state.password_hash))
    else:
        _cache().drop(key)
    return result


def _too_many_attempts(refusal: Refusal) -> Response:
    if refusal.reason == "locked":
        message = (f"the account is temporarily locked after repeated failed sign-ins; "
                   f"try again in {refusal.minutes} min")
    else:
        message = f"too many failed sign-ins from this address; try again in {refusal.minutes} min"
    if request.path.startswith("/engine-rest"):
        response = jsonify({"type": "RestException", "message": message, "code": "too_many_attempts"})
    else:
        response = jsonify({"error": "too_many_attempts", "message": message})
    response.status_code = 429
    response.headers["Retry-After"] = str(refusal.retry_after)
    return response


def basic_user() -> ApiUser | None:
    """The staff account named by the request's HTTP Basic credentials, if they are right and the
    account is active and not locked (checked on every request, even for remembered credentials)."""
    result = g.basic_sign_in if "basic_sign_in" in g else _sign_in()
    if isinstance(result, SignedIn):
        return ApiUser(result.staff)
    return None


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
