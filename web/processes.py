"""Process pages for process owners: the deployed processes and decisions with their versions,
each diagram with the number of running instances waiting at every element, uploading and
deploying files from the browser (a refused file is shown with the refused element marked),
downloading the XML, and evaluating a decision with test inputs."""

from __future__ import annotations

import json
import math
import re
from pathlib import PurePath
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from engine.deployment import MAX_DEPLOY_FILES, file_kind
from engine.errors import DeploymentError, EngineError, NotFound, ProcessError
from web.access import Staff, engine
from web.api import decision_table
from web.headers import download, style_attributes

bp = Blueprint("processes", __name__, url_prefix="/processes")

MAX_FILES = MAX_DEPLOY_FILES  # the engine refuses more on every path
# FEEL words that are not variables (for finding the variables an input expression reads)
FEEL_WORDS = {"and", "or", "not", "true", "false", "null", "if", "then", "else", "for", "in", "return", "some",
              "every", "satisfies", "instance", "of", "function", "between", "date", "time", "duration",
              "string", "number", "length", "upper", "lower", "case", "contains", "substring", "sum", "count",
              "min", "max", "abs", "floor", "ceiling", "decimal", "day", "week", "years", "months"}
IDENTIFIER = re.compile(r"[A-Za-z_\u4e00-\u9fff][A-Za-z0-9_\u4e00-\u9fff]*")
STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
NUMBER_TYPES = {"integer", "long", "double", "number"}


@bp.before_request
def _process_owners_only() -> Any:
    if not current_user.is_authenticated:
        from web.auth import login_manager

        return login_manager.unauthorized()
    who: Staff = current_user.staff
    if not (who.is_process_owner or who.is_admin):
        abort(403)
    return None


def _staff() -> Staff:
    return current_user.staff


# ---------------------------------------------------------------------------------- list ----
@bp.get("/")
def index() -> str:
    eng = engine()
    processes: dict[str, dict] = {}
    for d in eng.list_definitions():  # newest version first within a key
        entry = processes.setdefault(d["key"], {"key": d["key"], "latest": d, "versions": 0})
        entry["versions"] += 1
    for entry in processes.values():
        entry["active"] = eng.count_instances(process_key=entry["key"], status="active")
    decisions: dict[str, dict] = {}
    for x in eng.list_decisions():
        entry = decisions.setdefault(x["key"], {"key": x["key"], "latest": x, "versions": 0})
        entry["versions"] += 1
    deployments = list(reversed(eng.list_deployments()))[:10]
    return render_template("processes/index.html", processes=sorted(processes.values(), key=lambda p: p["key"]),
                           decisions=sorted(decisions.values(), key=lambda x: x["key"]), deployments=deployments)


# ------------------------------------------------------------------------------- process ----
def _chosen(versions: list[dict]) -> dict:
    wanted = request.args.get("version", type=int)
    if wanted is None:
        return versions[0]
    for v in versions:
        if v["version"] == wanted:
            return v
    abort(404)


@bp.get("/<key>")
def process(key: str) -> str:
    eng = engine()
    versions = eng.list_definitions(key)
    if not versions:
        abort(404)
    chosen = _chosen(versions)
    active_by_version = {v["id"]: eng.count_instances(definition_id=v["id"], status="active") for v in versions}
    activity = eng.element_activity(chosen["id"])
    deployment = eng.get_deployment(chosen["deployment_id"])
    diagram = {"xmlUrl": url_for(".definition_xml", definition_id=chosen["id"]), "activity": activity,
               "labels": {"tasks": _("待办任务"), "timers": _("等待定时器"), "messages": _("等待消息")}}
    totals = {kind: sum(counts[kind] for counts in activity.values()) for kind in ("tasks", "timers", "messages")}
    return render_template("processes/process.html", key=key, versions=versions, chosen=chosen,
                           active_by_version=active_by_version, activity=activity, totals=totals,
                           deployment=deployment,
                           start_form=eng.start_form(definition_id=chosen["id"]).fields, diagram=diagram)


@bp.get("/definitions/<definition_id>/xml")
def definition_xml(definition_id: str) -> Response:
    """The deployed file, always as a download: the viewers fetch() it and draw it with bpmn-js /
    dmn-js; opened by a link it is saved, never shown as a page of this origin (see web/headers.py)."""
    try:
        name, content = engine().definition_xml(definition_id)
    except NotFound:
        abort(404)
    return download(content, name, cache_control="private, max-age=3600")


# -------------------------------------------------------------------------------- deploy ----
@bp.get("/deploy")
def deploy_form() -> str:
    return render_template("processes/deploy.html", refused=None, form={"changed_only": True})


@bp.post("/deploy")
def deploy() -> Any:
    uploads = [f for f in request.files.getlist("files") if f and f.filename]
    form = {"name": (request.form.get("name") or "").strip()[:255],
            "changed_only": request.form.get("changed_only") == "on"}
    if not uploads:
        flash(_("请选择要部署的 .bpmn 或 .dmn 文件"), "error")
        return render_template("processes/deploy.html", refused=None, form=form), 400
    if len(uploads) > MAX_FILES:
        flash(_("一次最多部署 %(n)s 个文件", n=MAX_FILES), "error")
        return render_template("processes/deploy.html", refused=None, form=form), 400
    files = [(PurePath(f.filename).name[:255], f.read()) for f in uploads]
    name = form["name"] or PurePath(files[0][0]).stem or "upload"
    try:
        result = engine().deploy(files, name=name, source="web", user=_staff().username,
                                 changed_only=form["changed_only"])
    except DeploymentError as exc:
        return _refused(exc, files, form), 400
    if not result.created:
        flash(_("所有文件均未改动，未产生新版本"), "info")
        return redirect(url_for(".index"))
    deployed = [f"{d['name'] or d['key']} v{d['version']}" for d in
                result.process_definitions + result.decision_definitions]
    flash(_("部署成功：%(what)s", what="、".join(deployed)), "success")
    if result.process_definitions:
        first = result.process_definitions[0]
        return redirect(url_for(".process", key=first["key"], version=first["version"]))
    first = result.decision_definitions[0]
    return redirect(url_for(".decision", key=first["key"], version=first["version"]))


def _refused(exc: DeploymentError, files: list[tuple[str, bytes]], form: dict) -> str:
    """The upload page again, with the refusal and the refused diagram, its element marked."""
    content = next((c for n, c in files if n == exc.file), None)
    diagram = None
    if content is not None and exc.element and exc.file and file_kind(exc.file) == "bpmn":
        diagram = {"xml": content.decode("utf-8", "replace"), "refused": exc.element, "message": exc.reason,
                   "failedText": _("该文件无法显示为流程图（XML 格式错误）")}
    refused = {"file": exc.file, "element": exc.element, "line": exc.line, "attribute": exc.attribute,
               "reason": exc.reason, "message": exc.message}
    return render_template("processes/deploy.html", refused=refused, diagram=diagram, form=form)


# ------------------------------------------------------------------------------ decision ----
def _input_fields(table: dict) -> list[dict]:
    """One form field per variable the decision's input expressions read."""
    fields: dict[str, dict] = {}
    for item in table["inputs"]:
        if item["variable"]:
            fields.setdefault(item["variable"], {"name": item["variable"], "label": item["label"],
                                                 "type_ref": (item["type_ref"] or "").lower() or None})
            continue
        text = STRING_LITERAL.sub("", item["expression"] or "")
        for word in IDENTIFIER.findall(text):
            if word.lower() not in FEEL_WORDS and not re.search(rf"\.\s*{re.escape(word)}\b", text):
                fields.setdefault(word, {"name": word, "label": f"{item['label'] or ''} ({item['expression']})",
                                         "type_ref": None})
    return list(fields.values())


def _typed(raw: str, type_ref: str | None) -> Any:
    """A test input as the decision expects it; raises ValueError with the reason."""
    text = raw.strip()
    if type_ref == "boolean":
        if text not in ("true", "false"):
            raise ValueError(_("请选择 是 或 否"))
        return text == "true"
    if type_ref in ("integer", "long"):
        try:
            return int(text)
        except ValueError:
            raise ValueError(_("请输入整数")) from None
    if type_ref in ("double", "number"):
        try:
            return float(text)
        except ValueError:
            raise ValueError(_("请输入数字")) from None
    if type_ref is None:  # unknown: JSON when it reads as JSON (numbers, true/false, lists), else text
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return raw
        return value if not isinstance(value, float) or math.isfinite(value) else raw
    return raw


@bp.route("/decisions/<key>", methods=["GET", "POST"])
@style_attributes  # dmn-js sizes the table's columns with style attributes
def decision(key: str) -> Any:
    eng = engine()
    versions = eng.list_decisions(key)
    if not versions:
        abort(404)
    chosen = _chosen(versions)
    try:
        table = decision_table(eng, chosen)
    except EngineError:
        table = {"hit_policy": None, "inputs": [], "outputs": []}
    inputs = _input_fields(table)
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    results = None
    failure = None
    status = 200
    if request.method == "POST":
        variables: dict[str, Any] = {}
        for field in inputs:
            raw = request.form.get(f"in-{field['name']}", "")
            values[field["name"]] = raw
            if raw.strip() == "":
                variables[field["name"]] = None
                continue
            try:
                variables[field["name"]] = _typed(raw, field["type_ref"])
            except ValueError as exc:
                errors[field["name"]] = str(exc)
        if errors:
            status = 400
        else:
            try:
                results = eng.evaluate_decision(definition_id=chosen["id"], variables=variables)
            except (ProcessError, EngineError) as exc:
                failure, status = exc.message, 422
    return render_template("processes/decision.html", key=key, versions=versions, chosen=chosen, table=table,
                           inputs=inputs, values=values, errors=errors, results=results, failure=failure,
                           outputs=[o["name"] for o in table["outputs"]],
                           xml_url=url_for(".definition_xml", definition_id=chosen["id"])), status
