"""Camunda 7's external-task REST API (/engine-rest/external-task) and its incidents
(/engine-rest/incident), so that Camunda's own clients (camunda-external-task-client-js,
camunda-external-task-client-python3) and scripts written for Camunda 7 run their workers
against this service unchanged.

The work is done by ``engine.external.ExternalTaskService``; this module reads Camunda's JSON,
converts typed variables (``engine.variables``), and answers with Camunda's shapes
(LockedExternalTaskDto, ExternalTaskDto, IncidentDto), status codes and error bodies
(``{"type": …, "message": …}``: a missing task or a lock held by someone else is a
``RestException`` with 404 / 400, as Camunda answers).

Authentication is HTTP Basic with a staff account (``web.rest_auth``). Fetching and handling
tasks hands out patient data, so it takes an administrator, a process owner, or a member of the
group ``external_worker`` (the account a worker runs as); setting retries takes an administrator
or a process owner; the center director may read too.

Differences from Camunda, on purpose: a query parameter or body property this service does not
know is refused (400) rather than ignored; a completion is refused also when the worker's lock
has expired (Camunda only compares worker ids); a BPMN error that nothing catches raises an
incident instead of ending the branch silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from engine.errors import EngineError, Forbidden, InvalidInput, NotFound
from engine.external import ExternalTaskLockError, ExternalTaskQuery, IncidentQuery
from engine.service import WorkflowEngine
from engine.variables import format_date, parse_date, to_typed, variables_from_camunda
from web import masking
from web.engine_rest import Params, _authenticate, _error, _http_error, _refuse_nul
from web.errors import camunda_type, http_status
from web.json_body import read_object
from web.rest_auth import ApiUser

bp = Blueprint("external_rest", __name__)
incident_bp = Blueprint("incident_rest", __name__)

WORKER_GROUP = "external_worker"
MAX_RESULTS = 1000
FETCH_FIELDS = {"workerId", "maxTasks", "usePriority", "asyncResponseTimeout", "topics", "sorting"}


def _engine() -> WorkflowEngine:
    return current_app.extensions["engine"]


def _tz():
    return _engine().settings.tz


def _service():
    return _engine().external_tasks


# ------------------------------------------------------------------ errors and auth ----------
def _engine_error(exc: EngineError) -> Response:
    if isinstance(exc, ExternalTaskLockError):
        return _error(400, "RestException", exc.message)
    if isinstance(exc, NotFound):
        # Camunda: a command on a missing task is a RestException, a lookup an InvalidRequestException
        kind = "InvalidRequestException" if request.method == "GET" else "RestException"
        return _error(404, kind, exc.message)
    if isinstance(exc, Forbidden):
        user = g.get("api_user")
        missing = {"permissionName": exc.details.get("permission"), "resourceName": exc.details.get("resource"),
                   "resourceId": "*"}
        return _error(403, "AuthorizationException", exc.message, userId=user.username if user else None,
                      missingAuthorizations=[missing], **missing)
    return _error(http_status(exc), camunda_type(exc), exc.message)


def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    if isinstance(exc, RecursionError):
        return _error(400, "InvalidRequestException", "the request body is nested too deeply")
    current_app.logger.exception("external-task REST: %s %s failed", request.method, request.path)
    return _error(500, "RestException", f"the request failed inside the service: {type(exc).__name__}")


for _blueprint in (bp, incident_bp):
    _blueprint.register_error_handler(EngineError, _engine_error)
    _blueprint.register_error_handler(HTTPException, _http_error)
    _blueprint.register_error_handler(Exception, _unexpected)
    _blueprint.before_request(_authenticate)

    @_blueprint.record_once
    def _exempt_from_csrf(state) -> None:
        csrf = state.app.extensions.get("csrf")
        if csrf is not None:
            csrf.exempt(bp)
            csrf.exempt(incident_bp)


def _user() -> ApiUser:
    return g.api_user


def _is_worker(user: ApiUser) -> bool:
    staff = user.staff
    # least privilege: fetching and locking work is the worker accounts' role alone
    return WORKER_GROUP in staff.groups


def _require(allowed: bool, permission: str, resource: str) -> None:
    if not allowed:
        raise Forbidden(f"The user with id '{_user().username}' does not have '{permission}' permission on "
                        f"resource '*' of type '{resource}'", permission=permission, resource=resource)


def _require_worker() -> None:
    _require(_is_worker(_user()), "UPDATE", "ProcessInstance")


def _require_reader() -> None:
    staff = _user().staff
    _require(_is_worker(_user()) or staff.is_director or staff.is_admin or staff.is_process_owner, "READ",
             "ProcessInstance")


def _require_operator() -> None:
    staff = _user().staff
    _require(staff.is_admin or staff.is_process_owner, "UPDATE", "ProcessInstance")


# ------------------------------------------------------------------------ input ---------------
def _body(allowed: Iterable[str] | None = None) -> dict[str, Any]:
    body = read_object(request)
    if allowed is not None:
        unknown = sorted(k for k in body if k not in set(allowed))
        if unknown:
            raise InvalidInput(f"property '{unknown[0]}' is not supported here "
                               f"(supported: {', '.join(sorted(allowed))})", field=unknown[0])
    return body


class _Params(Params):
    """Query parameters (GET) or a JSON query (POST), read as Camunda reads them: engine_rest's
    reader (unknown names refused) with the external-task API's own kinds of value."""

    def __init__(self, source: Mapping[str, Any] | MultiDict, allowed: Iterable[str]):
        super().__init__(source, allowed)
        _refuse_nul(dict(source.lists()) if isinstance(source, MultiDict) else source)

    def raw(self, name: str) -> Any:
        return self._raw(name)

    def text(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not isinstance(value, str):
            raise self.invalid(name, value)
        return value

    def texts(self, name: str) -> list[str] | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, str):
            return [v for v in value.split(",") if v]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise self.invalid(name, value)

    def flag(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.invalid(name, value)

    def number(self, name: str, *, signed: bool = False) -> int | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and (signed or value >= 0):
            return value
        if isinstance(value, str):
            digits = value[1:] if signed and value.startswith("-") else value
            if digits.isdigit() and len(digits) < 19:
                return int(value)
        raise self.invalid(name, value)

    def date(self, name: str):
        value = self.raw(name)
        return None if value is None else parse_date(value, _tz(), what=name)

    def page(self) -> tuple[int, int]:
        first = self.number("firstResult") or 0
        most = self.number("maxResults")
        return first, MAX_RESULTS if most is None else min(most, MAX_RESULTS)

    def order(self, columns: Iterable[str]) -> list[tuple[str, bool]]:
        columns = set(columns)
        sorting = self.raw("sorting")
        pairs: list[tuple[Any, Any]] = []
        if sorting is not None:
            if not isinstance(sorting, list) or not all(isinstance(s, Mapping) for s in sorting):
                raise self.invalid("sorting", sorting)
            pairs = [(s.get("sortBy"), s.get("sortOrder")) for s in sorting]
        elif self.raw("sortBy") is not None or self.raw("sortOrder") is not None:
            if self.raw("sortBy") is None or self.raw("sortOrder") is None:
                raise InvalidInput("Only a single sorting parameter specified. sortBy and sortOrder required")
            pairs = [(self.raw("sortBy"), self.raw("sortOrder"))]
        out = []
        for by, direction in pairs:
            if by not in columns:
                raise self.invalid("sortBy", by)
            if direction not in ("asc", "desc"):
                raise self.invalid("sortOrder", direction)
            out.append((by, direction == "desc"))
        return out


def _variables(raw: Any, what: str) -> dict[str, Any]:
    return variables_from_camunda(raw, _tz(), what=what)


# ----------------------------------------------------------------------- DTOs ----------------
def _task_dto(t: dict) -> dict:
    tz = _tz()
    return {
        "activityId": t["activity_id"], "activityInstanceId": f"{t['activity_id']}:{t['id']}",
        "errorMessage": t["error_message"], "executionId": t["id"], "id": t["id"],
        "lockExpirationTime": format_date(t["lock_expires_at"], tz), "createTime": format_date(t["created_at"], tz),
        "processDefinitionId": t["definition_id"], "processDefinitionKey": t["process_key"],
        "processDefinitionVersionTag": None, "processInstanceId": t["instance_id"], "tenantId": t["tenant_id"],
        "retries": t["retries"], "suspended": False, "workerId": t["worker_id"], "priority": t["priority"],
        "topicName": t["topic"], "businessKey": t["business_key"],
    }


def _locked_dto(t: dict) -> dict:
    tz = _tz()
    out = _task_dto(t)
    out["errorDetails"] = t.get("error_details")
    out["variables"] = {name: to_typed(v.get("value"), tz, v.get("type")) for name, v in t["variables"].items()}
    out["extensionProperties"] = t.get("extension_properties") or {}
    return out


def _incident_dto(i: dict) -> dict:
    return {
        "id": i["id"], "processDefinitionId": i["definition_id"], "processInstanceId": i["instance_id"],
        "executionId": i["configuration"], "incidentTimestamp": format_date(i["created_at"], _tz()),
        "incidentType": i["incident_type"], "activityId": i["activity_id"], "failedActivityId": i["activity_id"],
        "causeIncidentId": i["id"], "rootCauseIncidentId": i["id"], "configuration": i["configuration"],
        "tenantId": i["tenant_id"], "incidentMessage": i["message"], "jobDefinitionId": None,
        "annotation": i["annotation"],
    }


# --------------------------------------------------------------- fetch and lock --------------
@bp.post("/fetchAndLock")
def fetch_and_lock() -> Response:
    _require_worker()
    body = _body(FETCH_FIELDS)
    if body.get("maxTasks") is None:
        raise InvalidInput("maxTasks is required", field="maxTasks")
    topics = body.get("topics")
    if topics is not None and not isinstance(topics, list):
        raise InvalidInput("topics must be a list", field="topics")
    tasks = _service().fetch_and_lock(
        body.get("workerId"), body.get("maxTasks"), topics or [], use_priority=bool(body.get("usePriority")),
        sorting=body.get("sorting"), async_response_timeout=body.get("asyncResponseTimeout"))
    who = _user().staff
    for t in tasks:  # phone, ID and address masked unless the worker is in UNMASKED_API_USERS; reads audited
        if t["variables"]:
            t["variables"] = masking.read_variables(t["variables"], who, definition_id=t["definition_id"],
                                                    instance_id=t["instance_id"], resource_type="external_task",
                                                    resource_id=t["id"], tasks=())
    return jsonify([_locked_dto(t) for t in tasks])


# ----------------------------------------------------------------- task commands -------------
def _no_content() -> Response:
    return Response(status=204)


@bp.post("/<task_id>/complete")
def complete(task_id: str) -> Response:
    _require_worker()
    body = _body({"workerId", "variables", "localVariables"})
    _service().complete(task_id, body.get("workerId"), _variables(body.get("variables"), "variables"),
                        _variables(body.get("localVariables"), "localVariables"), user=_user().username)
    return _no_content()


@bp.post("/<task_id>/failure")
def failure(task_id: str) -> Response:
    _require_worker()
    body = _body({"workerId", "errorMessage", "errorDetails", "retries", "retryTimeout", "variables",
                  "localVariables"})
    if body.get("variables") or body.get("localVariables"):
        raise InvalidInput("variables with a failure are not supported: complete the task or report a "
                           "BPMN error to pass variables", field="variables")
    _service().handle_failure(task_id, body.get("workerId"), body.get("errorMessage"), body.get("errorDetails"),
                              body.get("retries", 0), body.get("retryTimeout", 0), user=_user().username)
    return _no_content()


@bp.post("/<task_id>/bpmnError")
def bpmn_error(task_id: str) -> Response:
    _require_worker()
    body = _body({"workerId", "errorCode", "errorMessage", "variables"})
    _service().handle_bpmn_error(task_id, body.get("workerId"), body.get("errorCode"), body.get("errorMessage"),
                                 _variables(body.get("variables"), "variables"), user=_user().username)
    return _no_content()


@bp.post("/<task_id>/extendLock")
def extend_lock(task_id: str) -> Response:
    _require_worker()
    body = _body({"workerId", "newDuration"})
    _service().extend_lock(task_id, body.get("workerId"), body.get("newDuration"))
    return _no_content()


@bp.post("/<task_id>/lock")
def lock(task_id: str) -> Response:
    _require_worker()
    body = _body({"workerId", "lockDuration"})
    _service().lock(task_id, body.get("workerId"), body.get("lockDuration"))
    return _no_content()


@bp.post("/<task_id>/unlock")
def unlock(task_id: str) -> Response:
    _require_worker()
    _body(set())
    _service().unlock(task_id, user=_user().username)
    return _no_content()


@bp.put("/<task_id>/retries")
def set_retries(task_id: str) -> Response:
    _require_operator()
    body = _body({"retries"})
    _service().set_retries(task_id, body.get("retries"), user=_user().username)
    return _no_content()


@bp.put("/retries")
def set_retries_sync() -> Response:
    _require_operator()
    body = _body({"retries", "externalTaskIds", "processInstanceIds"})
    ids = list(body.get("externalTaskIds") or [])
    if not isinstance(body.get("externalTaskIds") or [], list) or not all(isinstance(i, str) for i in ids):
        raise InvalidInput("externalTaskIds must be a list of ids", field="externalTaskIds")
    instances = body.get("processInstanceIds") or []
    if not isinstance(instances, list) or not all(isinstance(i, str) for i in instances):
        raise InvalidInput("processInstanceIds must be a list of ids", field="processInstanceIds")
    if instances:
        ids += [t["id"] for t in _service().list(ExternalTaskQuery(instance_ids=instances, limit=MAX_RESULTS))]
    if not ids:
        raise InvalidInput("externalTaskIds is empty", field="externalTaskIds")
    _service().set_retries(list(dict.fromkeys(ids)), body.get("retries"), user=_user().username)
    return _no_content()


@bp.put("/<task_id>/priority")
def set_priority(task_id: str) -> Response:
    _require_operator()
    body = _body({"priority"})
    _service().set_priority(task_id, body.get("priority"), user=_user().username)
    return _no_content()


# ----------------------------------------------------------------------- queries -------------
QUERY_PARAMS = ("externalTaskId", "externalTaskIdIn", "topicName", "workerId", "locked", "notLocked",
                "withRetriesLeft", "noRetriesLeft", "lockExpirationAfter", "lockExpirationBefore", "activityId",
                "activityIdIn", "executionId", "processInstanceId", "processInstanceIdIn", "processDefinitionId",
                "active", "suspended", "priorityHigherThanOrEquals", "priorityLowerThanOrEquals", "tenantIdIn")
SORT_KEYS = ("id", "lockExpirationTime", "processInstanceId", "processDefinitionId", "processDefinitionKey",
             "tenantId", "taskPriority", "createTime")


def _task_query(params: _Params, paged: bool) -> ExternalTaskQuery:
    f = ExternalTaskQuery(
        task_id=params.text("externalTaskId"), task_ids=params.texts("externalTaskIdIn"),
        topic=params.text("topicName"), worker_id=params.text("workerId"), locked=params.flag("locked"),
        not_locked=params.flag("notLocked"), with_retries_left=params.flag("withRetriesLeft"),
        no_retries_left=params.flag("noRetriesLeft"), lock_expiration_after=params.date("lockExpirationAfter"),
        lock_expiration_before=params.date("lockExpirationBefore"), activity_id=params.text("activityId"),
        activity_ids=params.texts("activityIdIn"), instance_id=params.text("processInstanceId"),
        instance_ids=params.texts("processInstanceIdIn"), definition_id=params.text("processDefinitionId"),
        tenant_ids=params.texts("tenantIdIn"), priority_at_least=params.number("priorityHigherThanOrEquals",
                                                                               signed=True),
        priority_at_most=params.number("priorityLowerThanOrEquals", signed=True),
        suspended=params.flag("suspended"), active=params.flag("active"))
    execution = params.text("executionId")
    if execution is not None:
        f.task_ids = [execution] if f.task_ids is None else [i for i in f.task_ids if i == execution]
    if paged:
        f.offset, f.limit = params.page()
        f.order = params.order(SORT_KEYS)
    else:
        f.limit = 0
    return f


def _list_tasks(params: _Params) -> Response:
    _require_reader()
    rows, _total = _service().query(_task_query(params, paged=True))
    return jsonify([_task_dto(t) for t in rows])


def _count_tasks(params: _Params) -> Response:
    _require_reader()
    return jsonify({"count": _service().query(_task_query(params, paged=False))[1]})


@bp.get("")
@bp.get("/")
def list_tasks() -> Response:
    return _list_tasks(_Params(request.args, QUERY_PARAMS + ("sortBy", "sortOrder", "firstResult", "maxResults")))


@bp.post("")
@bp.post("/")
def query_tasks() -> Response:
    body = _body()
    paging = {k: request.args[k] for k in ("firstResult", "maxResults") if k in request.args}
    return _list_tasks(_Params({**body, **paging}, QUERY_PARAMS + ("sorting", "firstResult", "maxResults")))


@bp.get("/count")
def count_tasks() -> Response:
    return _count_tasks(_Params(request.args, QUERY_PARAMS))


@bp.post("/count")
def count_tasks_post() -> Response:
    return _count_tasks(_Params(_body(), QUERY_PARAMS))


@bp.get("/topic-names")
def topic_names() -> Response:
    _require_reader()
    params = _Params(request.args, ("withLockedTasks", "withUnlockedTasks", "withRetriesLeft"))
    f = ExternalTaskQuery(locked=params.flag("withLockedTasks"), not_locked=params.flag("withUnlockedTasks"),
                          with_retries_left=params.flag("withRetriesLeft"), limit=MAX_RESULTS)
    return jsonify(sorted({t["topic"] for t in _service().list(f)}))


@bp.get("/<task_id>")
def get_task(task_id: str) -> Response:
    _require_reader()
    return jsonify(_task_dto(_service().get(task_id)))


@bp.get("/<task_id>/errorDetails")
def error_details(task_id: str) -> Response:
    _require_reader()
    details = _service().error_details(task_id)
    return Response(details or "", mimetype="text/plain")


# --------------------------------------------------------------------- incidents -------------
INCIDENT_PARAMS = ("incidentId", "incidentType", "incidentMessage", "incidentMessageLike", "processDefinitionId",
                   "processDefinitionKeyIn", "processInstanceId", "executionId", "activityId", "failedActivityId",
                   "configuration", "tenantIdIn")
INCIDENT_SORT_KEYS = ("incidentId", "incidentMessage", "incidentTimestamp", "incidentType", "activityId",
                      "processInstanceId", "processDefinitionId", "configuration", "tenantId")


def _require_incident_reader() -> None:
    staff = _user().staff
    _require(staff.is_admin or staff.is_process_owner or staff.is_director, "READ", "ProcessInstance")


def _incident_query(params: _Params, paged: bool) -> IncidentQuery:
    activity = params.text("activityId") or params.text("failedActivityId")
    configuration = params.text("configuration") or params.text("executionId")
    f = IncidentQuery(incident_id=params.text("incidentId"), incident_type=params.text("incidentType"),
                      message=params.text("incidentMessage"), message_like=params.text("incidentMessageLike"),
                      instance_id=params.text("processInstanceId"), definition_id=params.text("processDefinitionId"),
                      process_keys=params.texts("processDefinitionKeyIn"), activity_id=activity,
                      configuration=configuration, tenant_ids=params.texts("tenantIdIn"))
    if paged:
        f.offset, f.limit = params.page()
        f.order = params.order(INCIDENT_SORT_KEYS)
    else:
        f.limit = 0
    return f


@incident_bp.get("")
@incident_bp.get("/")
def list_incidents() -> Response:
    _require_incident_reader()
    params = _Params(request.args, INCIDENT_PARAMS + ("sortBy", "sortOrder", "firstResult", "maxResults"))
    rows, _total = _service().query_incidents(_incident_query(params, paged=True))
    return jsonify([_incident_dto(i) for i in rows])


@incident_bp.get("/count")
def count_incidents() -> Response:
    _require_incident_reader()
    params = _Params(request.args, INCIDENT_PARAMS)
    return jsonify({"count": _service().query_incidents(_incident_query(params, paged=False))[1]})


def _open_incident(incident_id: str) -> dict:
    incident = _service().get_incident(incident_id)
    if incident["state"] != "open":
        raise NotFound(f"Incident with id {incident_id} does not exist", incident_id=incident_id)
    return incident


@incident_bp.get("/<incident_id>")
def get_incident(incident_id: str) -> Response:
    _require_incident_reader()
    return jsonify(_incident_dto(_open_incident(incident_id)))


@incident_bp.put("/<incident_id>/annotation")
def annotate_incident(incident_id: str) -> Response:
    _require_operator()
    body = _body({"annotation"})
    _open_incident(incident_id)
    _service().annotate_incident(incident_id, body.get("annotation"), user=_user().username)
    return _no_content()


@incident_bp.delete("/<incident_id>/annotation")
def clear_incident_annotation(incident_id: str) -> Response:
    _require_operator()
    _open_incident(incident_id)
    _service().annotate_incident(incident_id, None, user=_user().username)
    return _no_content()


@incident_bp.delete("/<incident_id>")
def resolve_incident(incident_id: str) -> Response:
    _require_operator()
    incident = _open_incident(incident_id)
    return _error(400, "BadUserRequestException",
                  f"Cannot resolve an incident of type {incident['incident_type']}: set the retries of "
                  f"external task {incident['configuration']} once its cause is fixed")
