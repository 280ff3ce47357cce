"""The web application: staff task list, process pages, admin, and the REST APIs.

    app = create_app()                      # engine from the environment (DATABASE_URL, ...)
    app = create_app(engine=engine)         # an engine built by the caller (tests, `serve`)
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask

from engine.config import Settings
from engine.service import WorkflowEngine


def _secret_key(settings: Settings) -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    # A stable per-installation key kept beside the SQLite database (never in the repository).
    path = Path(settings.database_url.replace("sqlite:///", "")).parent / "secret_key" \
        if settings.database_url.startswith("sqlite:///") else None
    if path is None:
        return secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def create_app(test_config: dict | None = None, *, engine: WorkflowEngine | None = None) -> Flask:
    app = Flask(__name__)
    from web.json_body import CheckedJSONProvider

    app.json = CheckedJSONProvider(app)
    if engine is None:
        engine = WorkflowEngine.from_settings(Settings.from_env())
    app.config.from_mapping(
        SECRET_KEY=_secret_key(engine.settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("SESSION_COOKIE_SECURE", "0") == "1",
        FORCE_HTTPS=os.environ.get("FORCE_HTTPS", "0") == "1",
        REMEMBER_COOKIE_HTTPONLY=True,
        WTF_CSRF_TIME_LIMIT=None,
        BABEL_DEFAULT_LOCALE="zh_CN",
        BABEL_DEFAULT_TIMEZONE=engine.settings.timezone,
        MAX_CONTENT_LENGTH=10 * 1024 * 1024,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["engine"] = engine

    from web import setup

    setup.init_app(app)
    return app
