"""Wires extensions and blueprints into the app (called by `create_app`)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from web import admin, api, auth, engine_rest, external_rest, headers, incidents, processes, tasks

    headers.init_app(app)  # security headers on every response, downloads kept inert
    auth.init_app(app)
    app.register_blueprint(tasks.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(processes.bp)
    app.register_blueprint(api.bp, url_prefix="/api/v1")
    app.register_blueprint(engine_rest.bp, url_prefix="/engine-rest")
    # external tasks (Camunda's /engine-rest/external-task), incidents, the notification outbox
    app.register_blueprint(external_rest.bp, url_prefix="/engine-rest/external-task")
    app.register_blueprint(external_rest.incident_bp, url_prefix="/engine-rest/incident")
    app.register_blueprint(incidents.bp)
    from web import privacy_admin  # patient data: search, export, anonymize, erase (/admin/patients)

    app.register_blueprint(privacy_admin.bp)
    from web import audit

    app.register_blueprint(audit.bp)  # the audit log page and the audited "show" action
    from engine.privacy import install_log_filters

    install_log_filters()  # request lines (werkzeug, gunicorn) and other logs without patient data
