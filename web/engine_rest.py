"""The Camunda 7 REST subset under /engine-rest.

What Camunda Modeler's Deploy and Start buttons call (GET /version, GET /deployment?maxResults=0,
POST /deployment/create, POST /process-definition/{id}/start) and what scripts written for
Camunda 7 use: deployments, process and decision definitions, tasks, message correlation and
process instances, with Camunda's JSON shapes, status codes and error bodies
(``{"type": …, "message": …}``). Authentication is HTTP Basic with a staff account.

Differences from Camunda, on purpose: a query parameter this service does not implement is
refused (400) rather than ignored; lists hold at most 1000 rows per request; a lost race (a task
claimed by a colleague, an instance changed meanwhile) is 409 where Camunda answers 500.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import re2
from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from engine.deployment import content_hash, file_kind
from engine.dialect import dmn
from engine.errors import Conflict, DeploymentError, EngineError, Forbidden, InvalidInput, NotFound
from engine.service import TaskQuery, WorkflowEngine
from engine.variables import (
    FORM_FIELD_TYPES,
    dmn_type,
    format_date,
    to_typed,
    variables_from_camunda,
    variables_to_camunda,
)
from web import masking
from web.access import authorize_assignment, can_cancel
from web.errors import camunda_type, http_status
from web.json_body import read_object
from web.rest_auth import ApiUser, basic_user

bp = Blueprint("engine_rest", __name__)

CAMUNDA_VERSION = "7.22.0"
ENGINE_NAME = "default"
MAX_RESULTS = 1000
PAGING = ("firstResult", "maxResults")
SORTING = ("sortBy", "sortOrder")
RESERVED_PARTS = {"deployment-name", "deployment-source", "deployment-activation-time",
                  "enable-duplicate-filtering", "deploy-changed-only", "tenant-id"}
MAX_NAME = 255
MAX_PARAMETER = 2000  # characters in one text parameter (ids, keys, names and LIKE patterns are far shorter)
MAX_TENANT = 64


@bp.record_once
def _exempt_from_csrf(state) -> None:
    csrf = state.app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(bp)


def _engine() -> WorkflowEngine:
    return current_app.extensions["engine"]


def _tz():
    return _engine().settings.tz


def _user() -> ApiUser:
    return g.api_user


# ------------------------------------------------------------------------------ errors -----
def _error(status: int, type_name: str, message: str, /, **extra: Any) -> Response:
    response = jsonify({"type": type_name, "message": message, **extra})
    response.status_code = status
    return response


def _message(exc: EngineError) -> str:
    fields = exc.details.get("fields")
    if isinstance(fields, Mapping) and fields:
        return f"{exc.message}: " + "; ".join(f"{name}: {text}" for name, text in fields.items())
    return exc.message


@bp.errorhandler(EngineError)
def _engine_error(exc: EngineError) -> Response:
    extra: dict[str, Any] = {}
    message = _message(exc)
    if isinstance(exc, DeploymentError):
        if exc.file and file_kind(exc.file) == "bpmn":
            # Camunda's prefix: the Modeler recognizes a refused diagram by it
            message = f"ENGINE-09005 Could not parse BPMN process. Errors: {message}"
        problem = {"message": exc.reason, "line": exc.line, "column": None,
                   "mainBpmnElementId": exc.element, "bpmnElementIds": [exc.element] if exc.element else []}
        extra["details"] = {exc.file or "deployment": {"errors": [problem], "warnings": []}}
    elif isinstance(exc, Forbidden):
        missing = {"permissionName": exc.details.get("permission"), "resourceName": exc.details.get("resource"),
                   "resourceId": exc.details.get("resource_id")}
        extra = {"userId": _user().username if "api_user" in g else None, **missing,
                 "missingAuthorizations": [missing]}
    return _error(http_status(exc), camunda_type(exc), message, **extra)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    return _error(status, "InvalidRequestException" if status < 500 else "RestException",
                  exc.description or exc.name)


@bp.errorhandler(RecursionError)
def _too_deep(exc: RecursionError) -> Response:
    return _error(400, "InvalidRequestException", "the request body is nested too deeply")


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    current_app.logger.exception("engine-rest: %s %s failed", request.method, request.path)
    return _error(500, "ProcessEngineException", f"the request failed inside the service: {type(exc).__name__}")


@bp.before_request
def _authenticate() -> Response | None:
    user = basic_user()
    if user is None:
        response = _error(401, "RestException",
                          "authentication required: send HTTP Basic credentials of a staff account")
        response.headers["WWW-Authenticate"] = f'Basic realm="{ENGINE_NAME}"'
        return response
    g.api_user = user
    return None


def _require_deployer(action: str, resource: str, resource_id: str | None = None) -> None:
    user = _user()
    if not user.can_deploy:
        raise Forbidden(f"The user with id '{user.username}' does not have '{action}' permission on resource "
                        f"'{resource_id or '*'}' of type '{resource}': only process owners and administrators may",
                        permission=action, resource=resource, resource_id=resource_id)


# --------------------------------------------------------------------------- parameters -----
class Params:
    """Query parameters (GET) or a JSON query (POST) read the way Camunda reads them."""

    def __init__(self, source: Mapping[str, Any] | MultiDict, allowed: Iterable[str]):
        self.source = source
        allowed = set(allowed)
        unknown = sorted(str(k) for k in source if k not in allowed)
        if unknown:
            raise InvalidInput(f"parameter '{unknown[0]}' is not supported by this service "
                               f"(supported here: {', '.join(sorted(allowed))})", field=unknown[0])

    def _raw(self, name: str) -> Any:
        if isinstance(self.source, MultiDict):
            values = self.source.getlist(name)
            return values[-1] if values else None
        return self.source.get(name)

    @staticmethod
    def invalid(name: str, value: Any) -> InvalidInput:
        return InvalidInput(f"Cannot set query parameter '{name}' to value '{value}'", field=name)

    def text(self, name: str) -> str | None:
        value = self._raw(name)
        if value is None:
            return None
        if not isinstance(value, str) or "\x00" in value:
            raise self.invalid(name, value)
        if len(value) > MAX_PARAMETER:
            raise InvalidInput(f"query parameter '{name}' is longer than {MAX_PARAMETER} characters", field=name)
        return value

    def flag(self, name: str) -> bool | None:
        value = self._raw(name)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.invalid(name, value)

    def number(self, name: str) -> int | None:
        value = self._raw(name)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and value.isdigit() and len(value) < 10:
            return int(value)
        raise self.invalid(name, value)

    def texts(self, name: str) -> list[str] | None:
        value = self._raw(name)
        if value is None:
            return None
        if isinstance(value, str) and "\x00" not in value:
            values = [v for v in value.split(",") if v]
        elif isinstance(value, list) and all(isinstance(v, str) and "\x00" not in v for v in value):
            values = list(value)
        else:
            raise self.invalid(name, value)
        if len(values) > MAX_RESULTS or any(len(v) > MAX_PARAMETER for v in values):
            raise InvalidInput(f"query parameter '{name}' lists more than {MAX_RESULTS} values or a value longer "
                               f"than {MAX_PARAMETER} characters", field=name)
        return values

    def page(self) -> tuple[int, int]:
        first = self.number("firstResult") or 0
        limit = self.number("maxResults")
        if limit is None:
            limit = MAX_RESULTS
        if limit > MAX_RESULTS:
            raise InvalidInput(f"Max results limit of {MAX_RESULTS} exceeded!", field="maxResults")
        return first, limit

    def sorting(self, fields: Mapping[str, str]) -> list[tuple[str, bool]]:
        """(field, descending) pairs from sortBy/sortOrder or a body's "sorting" list."""
        pairs: list[tuple[Any, Any]] = []
        by, order = self._raw("sortBy"), self._raw("sortOrder")
        if by is not None or order is not None:
            if by is None or order is None:
                raise InvalidInput("Only a single sorting parameter specified. sortBy and sortOrder required",
                                   field="sortBy")
            pairs.append((by, order))
        listed = self._raw("sorting")
        if listed is not None:
            if not isinstance(listed, list) or not all(isinstance(x, Mapping) for x in listed):
                raise self.invalid("sorting", listed)
            pairs += [(x.get("sortBy"), x.get("sortOrder")) for x in listed]
        out = []
        for by, order in pairs:
            if not isinstance(by, str) or by not in fields:
                raise self.invalid("sortBy", by)
            if order not in ("asc", "desc"):
                raise self.invalid("sortOrder", order)
            out.append((fields[by], order == "desc"))
        return out


def _json_body() -> dict[str, Any]:
    return read_object(request)  # NUL characters and lone surrogates refused there


def _refuse_nul(value: Any) -> None:
    """No database column takes a NUL character (PostgreSQL refuses it): a bad request."""
    if isinstance(value, str) and "\x00" in value:
        raise InvalidInput("text must not contain NUL characters")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _refuse_nul(k)
            _refuse_nul(v)
    elif isinstance(value, list):
        for v in value:
            _refuse_nul(v)


def _like(pattern: str) -> Callable[[str], bool]:
    """Camunda's LIKE (`%` any text, `_` one character, a backslash makes the next one literal) as
    a matcher that runs in linear time whatever the pattern (RE2 has no backtracking)."""
    parts: list[str] = []
    chars = iter(pattern)
    for c in chars:
        if c == "\\":
            parts.append(re2.escape(next(chars, "\\")))
        elif c == "%":
            if not parts or parts[-1] != ".*":
                parts.append(".*")
        else:
            parts.append("." if c == "_" else re2.escape(c))
    compiled = re2.compile("(?s)" + "".join(parts))
    return lambda value: compiled.fullmatch(value) is not None


def _sorted(rows: list[dict], order: list[tuple[str, bool]]) -> list[dict]:
    for field, descending in reversed(order):
        rows = sorted(rows, key=lambda r, f=field: (r.get(f) is None, r.get(f) if r.get(f) is not None else 0),
                      reverse=descending)
    return rows


def _count(n: int) -> Response:
    return jsonify({"count": n})


def _list(rows: list[dict], params: Params, sort_fields: Mapping[str, str],
          dto: Callable[[dict], dict]) -> Response:
    first, limit = params.page()
    rows = _sorted(rows, params.sorting(sort_fields))
    return jsonify([dto(r) for r in rows[first:first + limit]])


# ---------------------------------------------------------------------------- engine info ---
@bp.get("/version")
def version() -> Response:
    return jsonify({"version": CAMUNDA_VERSION})


@bp.get("/engine")
def engines() -> Response:
    return jsonify([{"name": ENGINE_NAME}])


# ----------------------------------------------------------------------------- deployment ---
DEPLOYMENT_PARAMS = {"id", "name", "nameLike", "source", "withoutSource", "tenantIdIn", "withoutTenantId",
                     *SORTING, *PAGING}
DEPLOYMENT_SORT = {"id": "id", "name": "name", "deploymentTime": "deployed_at", "tenantId": "tenant_id"}


def _deployment_dto(d: dict, links: bool = False) -> dict:
    href = url_for("engine_rest.get_deployment", deployment_id=d["id"], _external=True)
    return {"links": [{"method": "GET", "href": href, "rel": "self"}] if links else [],
            "id": d["id"], "name": d["name"], "source": d["source"],
            "deploymentTime": format_date(d["deployed_at"], _tz()), "tenantId": d["tenant_id"]}


def _deployments(params: Params) -> list[dict]:
    rows = _engine().list_deployments(deployment_id=params.text("id"), name=params.text("name"),
                                      name_like=params.text("nameLike"), source=params.text("source"))
    if params.flag("withoutSource"):
        rows = [d for d in rows if d["source"] is None]
    tenants = params.texts("tenantIdIn")
    if tenants is not None or params.flag("withoutTenantId"):
        rows = [d for d in rows if d["tenant_id"] in (tenants or []) or
                (params.flag("withoutTenantId") and d["tenant_id"] is None)]
    return rows


@bp.get("/deployment")
def list_deployments() -> Response:
    params = Params(request.args, DEPLOYMENT_PARAMS)
    return _list(_deployments(params), params, DEPLOYMENT_SORT, _deployment_dto)


@bp.get("/deployment/count")
def count_deployments() -> Response:
    return _count(len(_deployments(Params(request.args, DEPLOYMENT_PARAMS - set(SORTING) - set(PAGING)))))


@bp.get("/deployment/<deployment_id>")
def get_deployment(deployment_id: str) -> Response:
    return jsonify(_deployment_dto(_engine().get_deployment(deployment_id)))


@bp.get("/deployment/<deployment_id>/resources")
def deployment_resources(deployment_id: str) -> Response:
    d = _engine().get_deployment(deployment_id)
    return jsonify([{"id": r["id"], "name": r["name"], "deploymentId": deployment_id} for r in d["resources"]])


@bp.get("/deployment/<deployment_id>/resources/<resource_id>/data")
def deployment_resource_data(deployment_id: str, resource_id: str) -> Response:
    from web.headers import download

    name, content = _engine().deployment_resource(deployment_id, resource_id)
    return download(content, name, "application/xml" if file_kind(name) else "application/octet-stream")


@bp.delete("/deployment/<deployment_id>")
def delete_deployment(deployment_id: str) -> Response:
    params = Params(request.args, {"cascade", "skipCustomListeners", "skipIoMappings"})
    _require_deployer("DELETE", "Deployment", deployment_id)
    _engine().delete_deployment(deployment_id, cascade=bool(params.flag("cascade")), user=_user().username)
    return Response(status=204)


@bp.post("/deployment/create")
def create_deployment() -> Response:
    _require_deployer("CREATE", "Deployment")
    form = request.form
    _refuse_nul(form.to_dict(flat=False))
    _refuse_nul([storage.filename or "" for storage in request.files.values()])
    for name in form:
        if name not in RESERVED_PARTS:
            raise InvalidInput(f"No file name found in the deployment resource described by form parameter "
                               f"'{name}'.", field=name)
    files: list[tuple[str, bytes]] = []
    for part, storage in request.files.items(multi=True):
        if part in RESERVED_PARTS:
            continue
        if not storage.filename:
            raise InvalidInput(f"No file name found in the deployment resource described by form parameter "
                               f"'{part}'.", field=part)
        if len(storage.filename) > MAX_NAME:
            raise InvalidInput(f"the file name '{storage.filename[:40]}…' is longer than {MAX_NAME} characters",
                               field=part)
        files.append((storage.filename, storage.read()))
    if not files:
        raise InvalidInput("No deployment resources contained in the form upload.")
    if form.get("deployment-activation-time"):
        raise InvalidInput("deployment-activation-time is not supported: definitions are active when deployed",
                           field="deployment-activation-time")
    name = form.get("deployment-name") or "deployment"
    source = form.get("deployment-source") or None
    tenant_id = form.get("tenant-id") or None
    for field, value, limit in (("deployment-name", name, MAX_NAME), ("deployment-source", source, MAX_NAME),
                                ("tenant-id", tenant_id, MAX_TENANT)):
        if value is not None and len(value) > limit:
            raise InvalidInput(f"{field} is longer than {limit} characters", field=field)
    # Camunda's Boolean.parseBoolean: "true" in any case is true, anything else false
    changed_only = (form.get("deploy-changed-only") or "").lower() == "true"
    duplicate_filtering = changed_only or (form.get("enable-duplicate-filtering") or "").lower() == "true"

    engine, user = _engine(), _user().username
    if duplicate_filtering and not changed_only:
        # Camunda: nothing new when every file equals the one of the newest deployment of this name;
        # otherwise every file becomes a new version.
        known = engine.latest_resource_hashes(name, [n for n, _ in files], source=source, tenant_id=tenant_id)
        if all(known.get(n) == content_hash(c) for n, c in files):
            latest = engine.list_deployments(name=name)
            if latest:
                return jsonify(_deployment_with_definitions(latest[-1]["id"], created=False))
    result = engine.deploy(files, name=name, source=source, user=user, changed_only=changed_only,
                           tenant_id=tenant_id)
    if result.deployment_id is None:  # nothing new and nothing found to answer with
        raise Conflict("nothing was deployed: every file is unchanged")
    return jsonify(_deployment_with_definitions(result.deployment_id, created=result.created))


def _deployment_with_definitions(deployment_id: str, *, created: bool) -> dict:
    d = _engine().get_deployment(deployment_id)
    dto = _deployment_dto(d, links=True)
    processes = {p["id"]: _definition_dto(p, d["tenant_id"]) for p in d["process_definitions"]} if created else {}
    decisions = {x["id"]: _decision_dto(x, d["tenant_id"]) for x in d["decision_definitions"]} if created else {}
    dto.update({"deployedProcessDefinitions": processes or None, "deployedCaseDefinitions": None,
                "deployedDecisionDefinitions": decisions or None,
                "deployedDecisionRequirementsDefinitions": None})
    return dto


# --------------------------------------------------------------------- process definition ---
DEFINITION_PARAMS = {"processDefinitionId", "processDefinitionIdIn", "name", "nameLike", "deploymentId", "key",
                     "keysIn", "keyLike", "version", "latestVersion", "resourceName", "resourceNameLike",
                     "active", "suspended", "withoutTenantId", "includeProcessDefinitionsWithoutTenantId",
                     *SORTING, *PAGING}
DEFINITION_SORT = {"id": "id", "key": "key", "name": "name", "version": "version",
                   "deploymentId": "deployment_id", "deployTime": "created_at", "category": "category",
                   "tenantId": "tenant_id", "versionTag": "version_tag"}


def _tenants() -> dict[str, str | None]:
    return {d["id"]: d["tenant_id"] for d in _engine().list_deployments()}


def _definition_dto(p: dict, tenant_id: str | None = None) -> dict:
    return {"id": p["id"], "key": p["key"], "category": None, "description": None, "name": p["name"],
            "version": p["version"], "resource": p["resource"], "deploymentId": p["deployment_id"],
            "diagram": None, "suspended": False, "tenantId": tenant_id, "versionTag": None,
            "historyTimeToLive": None, "startableInTasklist": True}


def _filter_definitions(rows: list[dict], params: Params, id_param: str, id_in_param: str) -> list[dict]:
    """Filters process and decision definitions share."""
    if params.flag("latestVersion"):
        newest: dict[str, int] = {}
        for r in rows:
            newest[r["key"]] = max(newest.get(r["key"], 0), r["version"])
        rows = [r for r in rows if r["version"] == newest[r["key"]]]
    exact = {id_param: "id", "name": "name", "deploymentId": "deployment_id", "key": "key",
             "resourceName": "resource"}
    for param, field in exact.items():
        value = params.text(param)
        if value is not None:
            rows = [r for r in rows if r[field] == value]
    for param, field in {"nameLike": "name", "keyLike": "key", "resourceNameLike": "resource"}.items():
        value = params.text(param)
        if value is not None:
            matches = _like(value)
            rows = [r for r in rows if r[field] is not None and matches(r[field])]
    for param, field in {id_in_param: "id", "keysIn": "key"}.items():
        values = params.texts(param)
        if values is not None:
            rows = [r for r in rows if r[field] in values]
    version = params.number("version")
    if version is not None:
        rows = [r for r in rows if r["version"] == version]
    if params.flag("active") is False or params.flag("suspended"):
        rows = []  # nothing is ever suspended here
    return rows


def _process_definitions(params: Params) -> list[dict]:
    rows = _filter_definitions(_engine().list_definitions(), params, "processDefinitionId",
                               "processDefinitionIdIn")
    tenants = _tenants()
    for r in rows:
        r["tenant_id"] = tenants.get(r["deployment_id"])
    return rows


@bp.get("/process-definition")
def list_process_definitions() -> Response:
    params = Params(request.args, DEFINITION_PARAMS)
    return _list(_process_definitions(params), params, DEFINITION_SORT,
                 lambda p: _definition_dto(p, p["tenant_id"]))


@bp.get("/process-definition/count")
def count_process_definitions() -> Response:
    params = Params(request.args, DEFINITION_PARAMS - set(SORTING) - set(PAGING))
    return _count(len(_process_definitions(params)))


def _definition_by_id(definition_id: str) -> dict:
    try:
        return _engine().get_definition(definition_id)
    except NotFound as exc:
        raise NotFound(f"No matching definition with id {definition_id}") from exc


def _definition_by_key(key: str) -> dict:
    rows = _engine().list_definitions(key, latest_only=True)
    if not rows:
        raise NotFound(f"No matching process definition with key '{key}' and no tenant-id")
    return rows[0]


@bp.get("/process-definition/<definition_id>")
def get_process_definition(definition_id: str) -> Response:
    p = _definition_by_id(definition_id)
    return jsonify(_definition_dto(p, _tenants().get(p["deployment_id"])))


@bp.get("/process-definition/key/<key>")
def get_process_definition_by_key(key: str) -> Response:
    p = _definition_by_key(key)
    return jsonify(_definition_dto(p, _tenants().get(p["deployment_id"])))


def _bpmn_xml(p: dict) -> Response:
    _, content = _engine().definition_xml(p["id"])
    return jsonify({"id": p["id"], "bpmn20Xml": content.decode("utf-8", "replace")})


@bp.get("/process-definition/<definition_id>/xml")
def process_definition_xml(definition_id: str) -> Response:
    return _bpmn_xml(_definition_by_id(definition_id))


@bp.get("/process-definition/key/<key>/xml")
def process_definition_xml_by_key(key: str) -> Response:
    return _bpmn_xml(_definition_by_key(key))


def _start_form_variables(p: dict) -> Response:
    params = Params(request.args, {"variableNames", "deserializeValues"})
    wanted = params.texts("variableNames")
    form = _engine().start_form(definition_id=p["id"])
    return jsonify({f.id: to_typed(f.default, _tz(), FORM_FIELD_TYPES.get(f.type, "String"))
                    for f in form.fields if wanted is None or f.id in wanted})


@bp.get("/process-definition/<definition_id>/form-variables")
def start_form_variables(definition_id: str) -> Response:
    return _start_form_variables(_definition_by_id(definition_id))


@bp.get("/process-definition/key/<key>/form-variables")
def start_form_variables_by_key(key: str) -> Response:
    return _start_form_variables(_definition_by_key(key))


def _instance_dto(inst: dict, tenant_id: str | None = None) -> dict:
    href = url_for("engine_rest.get_process_instance", instance_id=inst["id"], _external=True)
    return {"links": [{"method": "GET", "href": href, "rel": "self"}], "id": inst["id"],
            "definitionId": inst["definition_id"], "definitionKey": inst["process_key"],
            "businessKey": inst["business_key"], "caseInstanceId": None, "ended": inst["status"] != "active",
            "suspended": False, "tenantId": tenant_id}


def _start(p: dict) -> Response:
    body = _json_body()
    if body.get("startInstructions"):
        raise InvalidInput("startInstructions are not supported: an instance starts at its none start event",
                           field="startInstructions")
    business_key = body.get("businessKey")
    if business_key is not None and not isinstance(business_key, str):
        raise InvalidInput("businessKey must be text", field="businessKey")
    variables = variables_from_camunda(body.get("variables"), _tz())
    engine = _engine()
    inst = engine.start(definition_id=p["id"], business_key=business_key or None, variables=variables,
                        user=_user().username)
    dto = _instance_dto(inst, _tenants().get(p["deployment_id"]))
    if body.get("withVariablesInReturn") is True:
        dto["variables"] = variables_to_camunda(_readable(engine.get_variables(inst["id"]), inst), _tz())
    return jsonify(dto)


@bp.post("/process-definition/<definition_id>/start")
def start_instance(definition_id: str) -> Response:
    return _start(_definition_by_id(definition_id))


@bp.post("/process-definition/key/<key>/start")
def start_instance_by_key(key: str) -> Response:
    return _start(_definition_by_key(key))


# -------------------------------------------------------------------- decision definition ---
DECISION_PARAMS = {"decisionDefinitionId", "decisionDefinitionIdIn", "name", "nameLike", "deploymentId", "key",
                   "keyLike", "version", "latestVersion", "resourceName", "resourceNameLike",
                   "withoutTenantId", "includeDecisionDefinitionsWithoutTenantId", *SORTING, *PAGING}
DECISION_SORT = {"id": "id", "key": "key", "name": "name", "version": "version", "deploymentId": "deployment_id",
                 "category": "category", "tenantId": "tenant_id", "versionTag": "version_tag",
                 "decisionRequirementsDefinitionId": "drd", "decisionRequirementsDefinitionKey": "drd"}


def _decision_dto(x: dict, tenant_id: str | None = None) -> dict:
    return {"id": x["id"], "key": x["key"], "category": None, "name": x["name"], "version": x["version"],
            "resource": x["resource"], "deploymentId": x["deployment_id"], "tenantId": tenant_id,
            "decisionRequirementsDefinitionId": None, "decisionRequirementsDefinitionKey": None,
            "historyTimeToLive": None, "versionTag": None}


def _decisions(params: Params) -> list[dict]:
    rows = _filter_definitions(_engine().list_decisions(), params, "decisionDefinitionId",
                               "decisionDefinitionIdIn")
    tenants = _tenants()
    for r in rows:
        r["tenant_id"] = tenants.get(r["deployment_id"])
    return rows


@bp.get("/decision-definition")
def list_decision_definitions() -> Response:
    params = Params(request.args, DECISION_PARAMS)
    return _list(_decisions(params), params, DECISION_SORT, lambda x: _decision_dto(x, x["tenant_id"]))


@bp.get("/decision-definition/count")
def count_decision_definitions() -> Response:
    return _count(len(_decisions(Params(request.args, DECISION_PARAMS - set(SORTING) - set(PAGING)))))


def _decision_by_id(definition_id: str) -> dict:
    for x in _engine().list_decisions():
        if x["id"] == definition_id:
            return x
    raise NotFound(f"No matching decision definition with id {definition_id}")


def _decision_by_key(key: str) -> dict:
    rows = _engine().list_decisions(key)
    if not rows:
        raise NotFound(f"No matching decision definition with key '{key}' and no tenant-id")
    return rows[0]  # newest first


@bp.get("/decision-definition/<definition_id>")
def get_decision_definition(definition_id: str) -> Response:
    x = _decision_by_id(definition_id)
    return jsonify(_decision_dto(x, _tenants().get(x["deployment_id"])))


@bp.get("/decision-definition/key/<key>")
def get_decision_definition_by_key(key: str) -> Response:
    x = _decision_by_key(key)
    return jsonify(_decision_dto(x, _tenants().get(x["deployment_id"])))


def _dmn_xml(x: dict) -> Response:
    _, content = _engine().definition_xml(x["id"])
    return jsonify({"id": x["id"], "dmnXml": content.decode("utf-8", "replace")})


@bp.get("/decision-definition/<definition_id>/xml")
def decision_definition_xml(definition_id: str) -> Response:
    return _dmn_xml(_decision_by_id(definition_id))


@bp.get("/decision-definition/key/<key>/xml")
def decision_definition_xml_by_key(key: str) -> Response:
    return _dmn_xml(_decision_by_key(key))


def output_types(engine: WorkflowEngine, x: dict) -> dict[str, str | None]:
    """typeRef of each output of a deployed decision (output name → typeRef)."""
    name, content = engine.definition_xml(x["id"])
    try:
        decision = dmn.parse_dmn(content, name).decision(x["key"])
    except dmn.DmnError:
        return {}
    if decision.kind == "literal":
        return {decision.result_name: decision.type_ref}
    return {o.name: o.type_ref for o in decision.outputs}


def _evaluate(x: dict) -> Response:
    body = _json_body()
    variables = variables_from_camunda(body.get("variables"), _tz())
    engine = _engine()
    results = engine.evaluate_decision(definition_id=x["id"], variables=variables)
    types = output_types(engine, x)
    return jsonify([{name: to_typed(value, _tz(), dmn_type(types.get(name), value)) for name, value in row.items()}
                    for row in results])


@bp.post("/decision-definition/<definition_id>/evaluate")
def evaluate_decision(definition_id: str) -> Response:
    return _evaluate(_decision_by_id(definition_id))


@bp.post("/decision-definition/key/<key>/evaluate")
def evaluate_decision_by_key(key: str) -> Response:
    return _evaluate(_decision_by_key(key))


# ----------------------------------------------------------------------------------- task ---
TASK_PARAMS = {"processInstanceId", "processInstanceBusinessKey", "processDefinitionId", "processDefinitionKey",
               "taskDefinitionKey", "name", "nameLike", "assignee", "candidateGroup", "candidateGroups",
               "candidateUser", "includeAssignedTasks", "unassigned", "active", "suspended", *PAGING}
TASK_SORT = {"id": "id", "name": "name", "assignee": "assignee", "created": "created", "dueDate": "due",
             "followUpDate": "follow_up", "priority": "priority", "instanceId": "instance_id",
             "executionId": "instance_id"}


def _task_dto(t: dict) -> dict:
    tz = _tz()
    return {"id": t["id"], "name": t["name"], "assignee": t["assignee"], "created": format_date(t["created_at"], tz),
            "due": format_date(t["due_at"], tz), "followUp": format_date(t["follow_up_at"], tz),
            "lastUpdated": None, "delegationState": None, "description": None, "executionId": t["instance_id"],
            "owner": None, "parentTaskId": None, "priority": t["priority"], "processDefinitionId": t["definition_id"],
            "processInstanceId": t["instance_id"], "taskDefinitionKey": t["element_id"], "caseExecutionId": None,
            "caseInstanceId": None, "caseDefinitionId": None, "suspended": False, "formKey": t["form_key"],
            "camundaFormRef": None, "tenantId": None, "taskState": "Created"}


def _task_query(params: Params, paged: bool) -> tuple[list[dict], int]:
    engine, user = _engine(), _user()
    groups = params.texts("candidateGroups")
    group = params.text("candidateGroup")
    if group is not None:
        groups = [*(groups or []), group]
    candidate_user = params.text("candidateUser")
    offered = groups is not None or candidate_user is not None
    f = TaskQuery(assignee=params.text("assignee"), candidate_groups=groups,
                  instance_id=params.text("processInstanceId"), process_key=params.text("processDefinitionKey"),
                  business_key=params.text("processInstanceBusinessKey"),
                  element_id=params.text("taskDefinitionKey"),
                  unassigned=params.flag("unassigned") or (offered and not params.flag("includeAssignedTasks")))
    offered_to = (candidate_user, engine.user_groups(candidate_user)) if candidate_user is not None else None
    order: list[tuple[str, bool]] = [("created", False)]
    if paged:
        f.offset, f.limit = params.page()
        order = params.sorting(TASK_SORT) or order
    if params.flag("active") is False or params.flag("suspended") or groups == []:
        return [], 0  # nothing is ever suspended here; no group offers nothing
    return engine.query_tasks(f, order=order, visible_to=user.visibility, offered_to=offered_to,
                              definition_id=params.text("processDefinitionId"), name=params.text("name"),
                              name_like=params.text("nameLike"))


@bp.get("/task")
def list_tasks() -> Response:
    rows, _ = _task_query(Params(request.args, TASK_PARAMS | set(SORTING)), paged=True)
    return jsonify([_task_dto(t) for t in rows])


@bp.post("/task")
def query_tasks() -> Response:
    params = Params(MultiDict(request.args), set(PAGING))
    first, limit = params.page()
    body = Params(_json_body(), TASK_PARAMS - set(PAGING) | {"sorting"})
    body.source = {**body.source, "firstResult": first, "maxResults": limit}
    rows, _ = _task_query(body, paged=True)
    return jsonify([_task_dto(t) for t in rows])


@bp.get("/task/count")
def count_tasks() -> Response:
    _, total = _task_query(Params(request.args, TASK_PARAMS - set(PAGING)), paged=False)
    return _count(total)


@bp.post("/task/count")
def count_tasks_post() -> Response:
    _, total = _task_query(Params(_json_body(), TASK_PARAMS - set(PAGING)), paged=False)
    return _count(total)


def _open_task(task_id: str) -> dict:
    task = _engine().get_task(task_id)
    if task["status"] != "open":
        raise NotFound(f"No matching task with id {task_id}")
    if not _user().sees_task(task):  # as in the task list: a guessed id reveals nothing
        raise NotFound(f"No matching task with id {task_id}")
    return task


def _user_id(body: Mapping[str, Any], *, required: bool) -> str | None:
    user_id = body.get("userId")
    if user_id is None and not required:
        return None
    if not isinstance(user_id, str) or not user_id:
        raise InvalidInput("userId must be the name of a user", field="userId")
    return user_id


@bp.get("/task/<task_id>")
def get_task(task_id: str) -> Response:
    return jsonify(_task_dto(_open_task(task_id)))


@bp.post("/task/<task_id>/claim")
def claim_task(task_id: str) -> Response:
    task = _open_task(task_id)
    user = _user()
    user_id = _user_id(_json_body(), required=True)
    if user_id != user.username:
        if not user.sees_all:
            raise Forbidden(f"The user with id '{user.username}' may claim tasks only for themselves",
                            permission="TASK_ASSIGN", resource="Task", resource_id=task_id)
        if task["assignee"] is None:
            authorize_assignment(task, user_id, user.staff)
    _engine().claim(task_id, user_id)
    return Response(status=204)


@bp.post("/task/<task_id>/unclaim")
def unclaim_task(task_id: str) -> Response:
    task = _open_task(task_id)
    user = _user()
    _authorize_assignment(task, None)
    _engine().unclaim(task_id, user.username)
    return Response(status=204)


@bp.post("/task/<task_id>/assignee")
def set_assignee(task_id: str) -> Response:
    task = _open_task(task_id)
    assignee = _user_id(_json_body(), required=False)
    _authorize_assignment(task, assignee)
    _engine().assign(task_id, assignee, _user().username)
    return Response(status=204)


def _authorize_assignment(task: dict, assignee: str | None) -> None:
    user = _user()
    try:
        authorize_assignment(task, assignee, user.staff)
    except Forbidden as exc:
        raise Forbidden(f"The user with id '{user.username}' does not have 'TASK_ASSIGN' permission on task "
                        f"'{task['id']}': {exc.message}", permission="TASK_ASSIGN", resource="Task",
                        resource_id=task["id"]) from exc


def _complete(task_id: str) -> Response:
    task = _open_task(task_id)
    body = _json_body()
    variables = variables_from_camunda(body.get("variables"), _tz())
    engine = _engine()
    engine.complete(task_id, variables, user=_user().username)
    if body.get("withVariablesInReturn") is True:
        stored = _readable(engine.get_variables(task["instance_id"]), task, resource=("task", task_id))
        return jsonify(variables_to_camunda(stored, _tz()))
    return Response(status=204)


@bp.post("/task/<task_id>/complete")
def complete_task(task_id: str) -> Response:
    return _complete(task_id)


@bp.post("/task/<task_id>/submit-form")
def submit_task_form(task_id: str) -> Response:
    return _complete(task_id)


@bp.get("/task/<task_id>/form")
def task_form_key(task_id: str) -> Response:
    task = _open_task(task_id)
    return jsonify({"key": task["form_key"], "contextPath": None, "camundaFormRef": None})


@bp.get("/task/<task_id>/form-variables")
def task_form_variables(task_id: str) -> Response:
    params = Params(request.args, {"variableNames", "deserializeValues"})
    wanted = params.texts("variableNames")
    task = _open_task(task_id)
    engine = _engine()
    current = _readable(engine.get_variables(task["instance_id"]), task, resource=("task", task_id))
    out = {}
    for f in engine.task_form(task_id).fields:
        if wanted is not None and f.id not in wanted:
            continue
        value = current[f.id]["value"] if f.id in current else f.default
        out[f.id] = to_typed(value, _tz(), FORM_FIELD_TYPES.get(f.type, "String"))
    return jsonify(out)


@bp.get("/task/<task_id>/variables")
def task_variables(task_id: str) -> Response:
    Params(request.args, {"deserializeValues"})
    task = _open_task(task_id)
    stored = _readable(_engine().get_variables(task["instance_id"]), task, resource=("task", task_id))
    return jsonify(variables_to_camunda(stored, _tz()))


def _readable(stored: dict, owner: dict, *, resource: tuple[str, str] | None = None) -> dict:
    """Variables as the caller may read them: phone numbers, ID numbers and addresses masked unless
    the caller works on an open step of the case that needs them or is listed in UNMASKED_API_USERS
    (web/masking.py); the read is audited. `owner` is the instance or task they belong to."""
    instance_id = owner.get("instance_id") or owner["id"]
    kind, ident = resource or ("instance", instance_id)
    return masking.read_variables(stored, _user().staff, definition_id=owner.get("definition_id"),
                                  instance_id=instance_id, resource_type=kind, resource_id=ident)


# -------------------------------------------------------------------------------- message ---
MESSAGE_FIELDS = {"messageName", "businessKey", "correlationKeys", "localCorrelationKeys", "processInstanceId",
                  "processVariables", "processVariablesLocal", "all", "resultEnabled", "variablesInResultEnabled",
                  "tenantId", "withoutTenantId", "processVariablesToTriggeredScope"}


@bp.post("/message")
def correlate_message() -> Response:
    body = _json_body()
    unknown = sorted(set(body) - MESSAGE_FIELDS)
    if unknown:
        raise InvalidInput(f"'{unknown[0]}' is not a field of a message correlation", field=unknown[0])
    name = body.get("messageName")
    if not isinstance(name, str) or not name:
        raise InvalidInput("No message name supplied", field="messageName")
    for unsupported in ("localCorrelationKeys", "processVariablesLocal", "processVariablesToTriggeredScope",
                        "processInstanceId", "tenantId"):
        if body.get(unsupported):
            raise InvalidInput(f"{unsupported} is not supported by this service", field=unsupported)
    business_key = body.get("businessKey")
    if business_key is not None and not isinstance(business_key, str):
        raise InvalidInput("businessKey must be text", field="businessKey")
    tz = _tz()
    keys = variables_from_camunda(body.get("correlationKeys"), tz, what="correlationKeys")
    variables = variables_from_camunda(body.get("processVariables"), tz, what="processVariables")
    engine = _engine()
    try:
        results = engine.correlate_message(name, business_key=business_key, correlation_keys=keys,
                                           variables=variables, user=_user().username,
                                           all_matches=body.get("all") is True, caller=_user().caller)
    except (NotFound, Conflict) as exc:  # Camunda: MismatchingMessageCorrelationException, a bad request
        raise InvalidInput(f"Cannot correlate message '{name}': {exc.message}", field="messageName") from exc
    if body.get("resultEnabled") is not True:
        return Response(status=204)
    out = []
    for result in results:
        inst = result["instance"]
        entry: dict[str, Any]
        if result["result_type"] == "Execution":
            entry = {"resultType": "Execution", "processInstance": None,
                     "execution": {"id": inst["id"], "processInstanceId": inst["id"],
                                   "ended": inst["status"] != "active", "tenantId": None}}
        else:
            entry = {"resultType": "ProcessDefinition", "execution": None, "processInstance": _instance_dto(inst)}
        if body.get("variablesInResultEnabled") is True:
            # a declared sender may deliver to an instance they cannot read: they get no variables
            readable = _engine().query_instances(instance_ids=[inst["id"]], visible_to=_user().visibility)[1]
            entry["variables"] = variables_to_camunda(_readable(engine.get_variables(inst["id"]), inst), tz) \
                if readable else {}
        out.append(entry)
    return jsonify(out)


# ----------------------------------------------------------------------- process instance ---
INSTANCE_PARAMS = {"processInstanceIds", "businessKey", "businessKeyLike", "processDefinitionId",
                   "processDefinitionKey", "deploymentId", "active", "suspended", *PAGING}
INSTANCE_SORT = {"instanceId": "id", "definitionKey": "process_key", "definitionId": "definition_id",
                 "businessKey": "business_key"}


def _instance_query(params: Params, paged: bool) -> tuple[list[dict], int]:
    first, limit = params.page() if paged else (0, 0)
    order = (params.sorting(INSTANCE_SORT) if paged else []) or [("started_at", False)]
    if params.flag("active") is False or params.flag("suspended"):
        return [], 0
    return _engine().query_instances(
        definition_id=params.text("processDefinitionId"), process_key=params.text("processDefinitionKey"),
        business_key=params.text("businessKey"), business_key_like=params.text("businessKeyLike"),
        instance_ids=params.texts("processInstanceIds"), deployment_id=params.text("deploymentId"),
        status="active", visible_to=_user().visibility, order=order, offset=first, limit=limit)


@bp.get("/process-instance")
def list_instances() -> Response:
    rows, _ = _instance_query(Params(request.args, INSTANCE_PARAMS | set(SORTING)), paged=True)
    return jsonify([_instance_dto(i) for i in rows])


@bp.post("/process-instance")
def query_instances() -> Response:
    params = Params(MultiDict(request.args), set(PAGING))
    first, limit = params.page()
    body = Params(_json_body(), INSTANCE_PARAMS - set(PAGING) | {"sorting"})
    body.source = {**body.source, "firstResult": first, "maxResults": limit}
    rows, _ = _instance_query(body, paged=True)
    return jsonify([_instance_dto(i) for i in rows])


@bp.get("/process-instance/count")
def count_instances() -> Response:
    _, total = _instance_query(Params(request.args, INSTANCE_PARAMS - set(PAGING)), paged=False)
    return _count(total)


@bp.post("/process-instance/count")
def count_instances_post() -> Response:
    _, total = _instance_query(Params(_json_body(), INSTANCE_PARAMS - set(PAGING)), paged=False)
    return _count(total)


def _running_instance(instance_id: str, *, any_instance: bool = False) -> dict:
    rows, _ = _engine().query_instances(instance_ids=[instance_id], status="active")
    if not rows:
        raise NotFound(f"Process instance with id {instance_id} does not exist")
    visibility = None if any_instance else _user().visibility
    visible, _ = _engine().query_instances(instance_ids=[instance_id], visible_to=visibility)
    if not visible:  # as in the task list: a guessed id reveals nothing
        raise NotFound(f"Process instance with id {instance_id} does not exist")
    return rows[0]


@bp.get("/process-instance/<instance_id>")
def get_process_instance(instance_id: str) -> Response:
    return jsonify(_instance_dto(_running_instance(instance_id)))


@bp.get("/process-instance/<instance_id>/variables")
def instance_variables(instance_id: str) -> Response:
    Params(request.args, {"deserializeValues"})
    inst = _running_instance(instance_id)
    return jsonify(variables_to_camunda(_readable(_engine().get_variables(instance_id), inst), _tz()))


@bp.get("/process-instance/<instance_id>/variables/<name>")
def instance_variable(instance_id: str, name: str) -> Response:
    Params(request.args, {"deserializeValue"})
    inst = _running_instance(instance_id)
    stored = _engine().get_variables(instance_id)
    if name not in stored:
        raise NotFound(f"process instance variable with name {name} does not exist")
    one = _readable({name: stored[name]}, inst)
    return jsonify(variables_to_camunda(one, _tz())[name])


@bp.delete("/process-instance/<instance_id>")
def delete_instance(instance_id: str) -> Response:
    Params(request.args, {"skipCustomListeners", "skipIoMappings", "skipSubprocesses", "failIfNotExists"})
    user = _user()
    if not can_cancel(user.staff):
        raise Forbidden(f"The user with id '{user.username}' does not have 'DELETE' permission on resource "
                        f"'{instance_id}' of type 'ProcessInstance': only process operators and administrators may",
                        permission="DELETE", resource="ProcessInstance", resource_id=instance_id)
    _running_instance(instance_id, any_instance=True)  # operators may cancel any of them
    _engine().cancel(instance_id, user=_user().username, reason="deleted through /engine-rest")
    return Response(status=204)


# ------------------------------------------------------------------------------ fallback ----
@bp.route("/", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
@bp.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
def not_implemented(path: str = "") -> Response:
    return _error(404, "RestException", f"{request.method} /engine-rest/{path} is not part of the Camunda 7 REST "
                                        "subset this service implements")
