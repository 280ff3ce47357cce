"""Checking a password, from the sign-in form or HTTP Basic alike: throttling per address
(Flask-Limiter), the temporary lock of an account name after repeated failures (in the database,
so every worker sees it), and the audit log (login, login_failed, locked).

Limits (app config, or the environment variable of the same name):

- LOGIN_RATE_LIMIT            every POST /login per address            (default "30 per minute")
- LOGIN_ACCOUNT_RATE_LIMIT    every POST /login per account name       (default "10 per minute")
- LOGIN_FAILURE_LIMIT         failed password checks per address, form
                              and HTTP Basic together                  (default "50 per 15 minutes")
- the account lock: Settings.login_max_failures / login_failure_window_minutes /
  login_lockout_minutes (LOGIN_MAX_FAILURES, ... ; default 5 failures in 15 min lock for 15 min)

Counters of the limits live in Flask-Limiter's storage: memory by default (per worker process);
set RATELIMIT_STORAGE_URI (e.g. redis://127.0.0.1:6379) to share them between workers. The
account lock does not depend on it. Behind reverse proxies set TRUSTED_PROXIES to their number, so
that the address is the client's (X-Forwarded-For), not the proxy's.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import secrets
import time
from dataclasses import dataclass

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse_many
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.security import check_password_hash

from engine import identity as identity_module
from engine.identity import IdentityService, SignInState
from web.access import Staff, engine

LIMIT_DEFAULTS = {
    "LOGIN_RATE_LIMIT": "30 per minute",
    "LOGIN_ACCOUNT_RATE_LIMIT": "10 per minute",
    "LOGIN_FAILURE_LIMIT": "50 per 15 minutes",
}
# refusals of a locked name or a throttled address are audited once a minute per name and address
REFUSAL_AUDIT_LIMIT = "1 per minute"


@dataclass(frozen=True)
class Refusal:
    """Why a sign-in was refused: "password" (wrong name or password, or inactive account: one
    answer for all), "locked" (the account name), "address" (too many failures from there),
    "rate" (too many attempts)."""

    reason: str
    retry_after: int = 0

    @property
    def status(self) -> int:
        return 401 if self.reason == "password" else 429

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.retry_after / 60))


@dataclass(frozen=True)
class SignedIn:
    state: SignInState
    # False when HTTP Basic credentials were already verified in this worker (not re-hashed)
    verified: bool = True

    @property
    def staff(self) -> Staff:
        return Staff(self.state.username, self.state.display_name, self.state.groups)


def init_app(app: Flask) -> None:
    proxies = app.config.setdefault("TRUSTED_PROXIES", int(os.environ.get("TRUSTED_PROXIES") or 0))
    if proxies:
        # the client's address from X-Forwarded-For, as set by that many reverse proxies in front
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)
    app.config.setdefault("RATELIMIT_STORAGE_URI", os.environ.get("RATELIMIT_STORAGE_URI") or "memory://")
    for key, default in LIMIT_DEFAULTS.items():
        value = app.config.setdefault(key, os.environ.get(key) or default)
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"{key}: {value!r} is not a rate limit (e.g. '30 per minute')") from None
    limiter = Limiter(key_func=get_remote_address, key_prefix="signin")
    limiter.init_app(app)
    app.extensions["signin_limiter"] = limiter


def _limiter() -> Limiter | None:
    limiter = current_app.extensions.get("signin_limiter")
    if limiter is None or not limiter.enabled or not current_app.config.get("RATELIMIT_ENABLED", True):
        return None
    return limiter


@functools.lru_cache(maxsize=32)
def _items(text: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(text))


def _limits(key: str) -> tuple[RateLimitItem, ...]:
    return _items(current_app.config[key])


def _wait(limiter: Limiter, item: RateLimitItem, *identifiers: str) -> int:
    reset_at = limiter.limiter.get_window_stats(item, *identifiers).reset_time
    return max(1, math.ceil(reset_at - time.time()))


def _hit(config_key: str, *identifiers: str) -> Refusal | None:
    """Count one event against the limits; a refusal when one of them is already used up."""
    limiter = _limiter()
    if limiter is None:
        return None
    for item in _limits(config_key):
        if not limiter.limiter.hit(item, config_key, *identifiers):
            return Refusal("rate", _wait(limiter, item, config_key, *identifiers))
    return None


def _used_up(config_key: str, *identifiers: str) -> int:
    """Seconds until the limits allow another event, 0 when they do now (counts nothing)."""
    limiter = _limiter()
    if limiter is None:
        return 0
    for item in _limits(config_key):
        if not limiter.limiter.test(item, config_key, *identifiers):
            return _wait(limiter, item, config_key, *identifiers)
    return 0


def _first_in_a_while(*identifiers: str) -> bool:
    limiter = _limiter()
    if limiter is None:
        return True
    return all(limiter.limiter.hit(item, "refusal-audit", *identifiers) for item in _items(REFUSAL_AUDIT_LIMIT))


def address() -> str:
    return request.remote_addr or ""


def rate_limit_form(username: str) -> Refusal | None:
    """Every POST /login counts, per address and per account name (right or wrong password)."""
    return _hit("LOGIN_RATE_LIMIT", address()) or \
        (_hit("LOGIN_ACCOUNT_RATE_LIMIT", username[:64]) if username else None)


def fingerprint(password_hash: str) -> str:
    """Changes whenever the password does: remembered credentials are only good for the hash
    they were verified against."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


@functools.cache
def _unknown_user_hash() -> str:
    return identity_module.hash_password(secrets.token_hex(16))


def sign_in(username: str, password: str, *, interface: str,
            verified_fingerprint: str | None = None) -> SignedIn | Refusal:
    """Check a name and password (interface: "web" or "basic"). With verified_fingerprint (HTTP
    Basic credentials this worker verified recently) the slow hash is skipped while the account's
    password hash still has that fingerprint; the account's state is read on every call."""
    identity = IdentityService(engine())
    where = address()
    wait = _used_up("LOGIN_FAILURE_LIMIT", where)
    if wait:
        if _first_in_a_while("address", where):
            _audit("locked", username, interface, scope="address", retry_after=wait)
        return Refusal("address", wait)

    state = identity.sign_in_state(username)
    locked_for = identity.locked_for(state)
    if locked_for is not None:
        wait = max(1, math.ceil(locked_for.total_seconds()))
        if interface == "web" or _first_in_a_while("account", state.username, where):
            _audit("login_failed", username, interface, reason="locked", retry_after=wait)
        return Refusal("locked", wait)

    if verified_fingerprint is not None and state.user_id is not None and state.active \
            and secrets.compare_digest(fingerprint(state.password_hash), verified_fingerprint):
        return SignedIn(state, verified=False)

    reason = _check(state, password)
    if reason is not None:
        _hit("LOGIN_FAILURE_LIMIT", where)
        locked_until = identity.record_failed_sign_in(username)
        _audit("login_failed", username, interface, reason=reason)
        if locked_until is not None:
            wait = max(1, math.ceil((locked_until - engine().clock.now()).total_seconds()))
            _audit("locked", username, interface, scope="account", retry_after=wait,
                   failures=engine().settings.login_max_failures)
            return Refusal("locked", wait)
        return Refusal("password")

    if state.failures or state.locked_until is not None:
        identity.clear_failed_sign_ins(username)
    _audit("login", username, interface)
    return SignedIn(state)


def _check(state: SignInState, password: str) -> str | None:
    """None when the password is right for an active account, else why not (for the audit log)."""
    if state.user_id is None:
        check_password_hash(_unknown_user_hash(), password)  # as slow as for an account: names do not leak
        return "unknown_user"
    if not check_password_hash(state.password_hash, password):
        return "wrong_password"
    if not state.active:
        return "inactive"
    return None


def _audit(action: str, username: str, interface: str, **details) -> None:
    engine().audit.record(action, user=username[:64] or None, address=address() or None,
                          resource_type="account", resource_id=username[:64] or None,
                          details={"interface": interface, **details})
