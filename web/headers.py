"""Browser security headers (flask-talisman) and how stored files are handed out.

Every response gets a Content-Security-Policy that runs only the app's own script files (no inline
script, no eval), `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` / `frame-ancestors
'none'` and a Referrer-Policy. Deployed BPMN/DMN files are written by whoever may deploy; they are
only ever handed out as downloads (`Content-Disposition: attachment`) with a policy of their own
that forbids everything and sandboxes the document, so a browser that is led to one by a link never
runs what the file carries. The diagram viewers fetch() the XML and give it to bpmn-js / dmn-js,
which draw it as SVG without executing anything in it.

HTTPS is terminated by the hospital's reverse proxy: `SESSION_COOKIE_SECURE=1` marks the cookies
Secure and turns HSTS on (sent on requests that arrived over HTTPS, `X-Forwarded-Proto: https`);
`FORCE_HTTPS=1` also redirects plain-HTTP requests (off by default: the proxy does that).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote

from flask import Flask, Response, current_app, request
from flask_talisman import Talisman

CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
# dmn-js (its Inferno-rendered decision table) writes `style` attributes into the markup it builds;
# Chromium refuses them under `style-src 'self'` (checked: bpmn-js needs no such exception, it sets
# styles through the CSSOM, which the policy does not govern). Only the pages marked with
# `@style_attributes` (the decision page) allow style *attributes*; style elements and style
# sheets still come only from the app's own files, and a style attribute cannot run script.
STYLE_ATTRIBUTE_POLICY = {**CONTENT_SECURITY_POLICY, "style-src-attr": "'unsafe-inline'"}
# A downloaded file is never a page: nothing loads, nothing runs, an opaque origin if rendered.
DOWNLOAD_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
PERMISSIONS_POLICY = {"camera": "()", "microphone": "()", "geolocation": "()", "payment": "()", "usb": "()"}
REFERRER_POLICY = "strict-origin-when-cross-origin"


def init_app(app: Flask) -> None:
    secure = bool(app.config.get("SESSION_COOKIE_SECURE"))
    app.config.setdefault("REMEMBER_COOKIE_SECURE", secure)
    # Flask runs after-request functions in the reverse order of registration: registered before
    # Talisman's, this one runs after it and has the last word on downloads and marked pages.
    app.after_request(_per_response_policy)
    app.extensions["talisman"] = Talisman(
        app,
        force_https=bool(app.config.get("FORCE_HTTPS")),
        strict_transport_security=secure,
        strict_transport_security_max_age=365 * 24 * 3600,
        strict_transport_security_include_subdomains=False,
        session_cookie_secure=secure,
        session_cookie_http_only=True,
        session_cookie_samesite=app.config.get("SESSION_COOKIE_SAMESITE") or "Lax",
        content_security_policy=CONTENT_SECURITY_POLICY,
        frame_options="DENY",
        referrer_policy=REFERRER_POLICY,
        permissions_policy=PERMISSIONS_POLICY,
        x_content_type_options=True,
    )


def style_attributes(view: Callable) -> Callable:
    """Marks a page whose viewer needs style attributes (see STYLE_ATTRIBUTE_POLICY)."""
    view.csp_style_attributes = True  # type: ignore[attr-defined]
    return view


def _policy(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def _per_response_policy(response: Response) -> Response:
    if response.headers.get("Content-Disposition", "").lower().startswith("attachment"):
        response.headers["Content-Security-Policy"] = DOWNLOAD_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if getattr(view, "csp_style_attributes", False):
        response.headers["Content-Security-Policy"] = _policy(STYLE_ATTRIBUTE_POLICY)
    return response


def download(content: bytes, name: str, mimetype: str = "application/xml", *,
             cache_control: str = "private, no-cache") -> Response:
    """A stored file (a deployed BPMN/DMN, a deployment resource) as a download, never a page."""
    # a plain-ASCII name for clients that do not read filename* (RFC 6266); runs of others become "_"
    ascii_name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "download"
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
    return Response(content, mimetype=mimetype,
                    headers={"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff",
                             "Content-Security-Policy": DOWNLOAD_POLICY, "Cache-Control": cache_control})
