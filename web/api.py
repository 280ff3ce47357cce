"""Our own REST API under /api/v1, described by an OpenAPI document at /api/v1/openapi.json.

Tasks, instances, deployments and definitions, decisions and the hospital calendar, for the web
UI's scripts and for integrations. Callers authenticate with HTTP Basic (a staff account) or the
web UI's session cookie; with the cookie, a request that changes something must carry
``X-Requested-With`` or a JSON body (a cross-site form can send neither), as CSRF protection.
Every input is validated by a marshmallow schema; errors are JSON ``{"error", "message", …}`` with
the status web/errors.py gives the engine's error (400 with ``fields`` for a form's errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask_smorest import Api
from flask_smorest import Blueprint as SmorestBlueprint
from flask_smorest.fields import Upload
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from engine.dialect import dmn
from engine.errors import EngineError, Forbidden, InvalidInput, NotFound
from engine.service import TaskQuery, WorkflowEngine
from engine.variables import MAX_NESTING, json_safe, plain_problem
from web import access, masking
from web.errors import http_status
from web.json_body import UnstorableText, check_text
from web.rest_auth import ApiUser, basic_user, session_user

API_VERSION = "1.0"
MAX_VARIABLE_DEPTH = MAX_NESTING
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

bp = Blueprint("api", __name__)


class _Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400  # a request that does not fit its schema is a bad request

    def _raw_load_json(self, req):
        body = super()._raw_load_json(req)
        try:
            check_text(body)  # lone surrogates and NUL characters: a 400 saying where, as everywhere
        except UnstorableText as exc:
            raise InvalidInput(str(exc)) from None
        return body


class ApiBlueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = _Parser()


rest = ApiBlueprint("api_v1", __name__, description="Hospital workflow API")


# ------------------------------------------------------------------------------ schemas -----
class Text(fields.String):
    """Text without NUL characters (no database column takes them)."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("must not contain NUL characters")
        return text


class LocalDateTime(fields.DateTime):
    """A moment written in the hospital's time zone (read in any zone; naive means local)."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, datetime):
            value = value.astimezone(_engine().settings.tz) if value.tzinfo else value
        return super()._serialize(value, attr, obj, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        if not 1900 <= moment.year <= 2199:
            raise ValidationError("must be between the years 1900 and 2199")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_engine().settings.tz)
        return moment


def _check_value(value: Any) -> None:
    problem = plain_problem(value)
    if problem is None:
        return
    kind, _ = problem
    if kind == "depth":
        raise ValidationError(f"nested more than {MAX_VARIABLE_DEPTH} levels deep")
    if kind == "number":
        raise ValidationError("numbers must be finite")
    raise ValidationError("text must not contain NUL characters")


class Variables(fields.Dict):
    """Process variables as plain JSON: name → value."""

    def __init__(self, **kwargs):
        super().__init__(keys=Text(validate=validate.Length(min=1, max=255)), values=fields.Raw(allow_none=True),
                         **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        out = super()._deserialize(value, attr, data, **kwargs)
        for name, item in out.items():
            try:
                _check_value(item)
            except ValidationError as exc:
                raise ValidationError({name: exc.messages}) from exc
        return out


class ApiErrorSchema(Schema):
    """An error: code and message, and what else the engine knows (task_id, assignee, …)."""

    class Meta:
        unknown = INCLUDE

    error = fields.String(metadata={"description": "machine-readable code (not_found, invalid_input, ...)"})
    message = fields.String()
    fields_ = fields.Dict(data_key="fields", keys=fields.String(), values=fields.String(),
                          metadata={"description": "per-field messages of an invalid request or form"})
    file = fields.String(metadata={"description": "refused deployment: the file"})
    element = fields.String(allow_none=True, metadata={"description": "refused deployment: the element id"})
    line = fields.Integer(allow_none=True)
    reason = fields.String()


class PageArgs(Schema):
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class TaskSchema(Schema):
    id = fields.String(required=True)
    instance_id = fields.String(required=True)
    definition_id = fields.String(required=True)
    process_key = fields.String(required=True)
    business_key = fields.String(allow_none=True)
    element_id = fields.String(required=True)
    name = fields.String(allow_none=True)
    status = fields.String(required=True, metadata={"enum": ["open", "completed", "cancelled"]})
    assignee = fields.String(allow_none=True)
    candidate_users = fields.List(fields.String())
    candidate_groups = fields.List(fields.String())
    created_at = LocalDateTime(required=True)
    due_at = LocalDateTime(allow_none=True)
    follow_up_at = LocalDateTime(allow_none=True)
    priority = fields.Integer()
    form_key = fields.String(allow_none=True)
    sla_state = fields.String(metadata={"enum": ["on_time", "due_soon", "overdue"]})
    completed_at = LocalDateTime(allow_none=True)
    completed_by = fields.String(allow_none=True)


class TaskPageSchema(Schema):
    items = fields.List(fields.Nested(TaskSchema), required=True)
    total = fields.Integer(required=True)
    offset = fields.Integer(required=True)
    limit = fields.Integer(required=True)


class TaskListArgs(PageArgs):
    assignee = Text(metadata={"description": "assigned to this user; 'me' for the caller"})
    candidate_group = fields.List(Text(), metadata={"description": "offered to one of these groups"})
    unassigned = fields.Boolean()
    process_key = Text()
    business_key = Text()
    instance_id = Text()
    element_id = Text()
    overdue = fields.Boolean()
    sla_state = fields.List(fields.String(validate=validate.OneOf(["on_time", "due_soon", "overdue"])))
    search = Text(validate=validate.Length(max=200))
    status = fields.String(load_default="open", validate=validate.OneOf(["open", "completed", "cancelled"]))
    sort = fields.String(load_default="due", validate=validate.OneOf(["due", "priority", "created"]))


class OptionSchema(Schema):
    id = fields.String()
    name = fields.String()


class FormFieldSchema(Schema):
    id = fields.String(required=True)
    label = fields.String()
    type = fields.String(metadata={"enum": ["string", "long", "boolean", "date", "enum"]})
    default = fields.Raw(allow_none=True)
    required = fields.Boolean()
    readonly = fields.Boolean()
    min_length = fields.Integer(allow_none=True)
    max_length = fields.Integer(allow_none=True)
    minimum = fields.Float(allow_none=True)
    maximum = fields.Float(allow_none=True)
    options = fields.List(fields.Nested(OptionSchema))


class TaskDetailSchema(TaskSchema):
    form = fields.List(fields.Nested(FormFieldSchema))


class AssignArgs(Schema):
    assignee = Text(required=True, allow_none=True, validate=validate.Length(min=1, max=64))


class CompleteArgs(Schema):
    variables = Variables(load_default=dict)


class InstanceSchema(Schema):
    id = fields.String(required=True)
    definition_id = fields.String(required=True)
    process_key = fields.String(required=True)
    business_key = fields.String(allow_none=True)
    status = fields.String(required=True, metadata={"enum": ["active", "completed", "cancelled"]})
    started_at = LocalDateTime(required=True)
    ended_at = LocalDateTime(allow_none=True)
    started_by = fields.String(allow_none=True)
    parent_instance_id = fields.String(allow_none=True)
    summary = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))


class InstancePageSchema(Schema):
    items = fields.List(fields.Nested(InstanceSchema), required=True)
    total = fields.Integer(required=True)
    offset = fields.Integer(required=True)
    limit = fields.Integer(required=True)


class InstanceListArgs(PageArgs):
    process_key = Text()
    definition_id = Text()
    business_key = Text()
    status = fields.String(validate=validate.OneOf(["active", "completed", "cancelled"]))
    search = Text(validate=validate.Length(max=200))


class HistoryEntrySchema(Schema):
    at = LocalDateTime()
    user = fields.String(allow_none=True)
    action = fields.String()
    element_id = fields.String(allow_none=True)
    element_name = fields.String(allow_none=True)
    task_id = fields.String(allow_none=True)
    details = fields.Dict(allow_none=True)


class ActiveElementSchema(Schema):
    element_id = fields.String()
    name = fields.String(allow_none=True)
    state = fields.String()
    task_id = fields.String()


class InstanceDetailSchema(InstanceSchema):
    process_name = fields.String(allow_none=True)
    process_version = fields.Integer()
    definition_key = fields.String()
    variables = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True))
    history = fields.List(fields.Nested(HistoryEntrySchema))
    path = fields.List(fields.String())
    active = fields.List(fields.Nested(ActiveElementSchema))
    tasks = fields.List(fields.Nested(TaskSchema))
    children = fields.List(fields.Nested(InstanceSchema))


class StartArgs(Schema):
    process_key = Text(validate=validate.Length(min=1, max=255))
    definition_id = Text(validate=validate.Length(min=1, max=128))
    business_key = Text(allow_none=True, validate=validate.Length(max=255))
    variables = Variables(load_default=dict)

    @validates_schema
    def _one_process(self, data, **kwargs):
        if bool(data.get("process_key")) == bool(data.get("definition_id")):
            raise ValidationError("give either process_key or definition_id", "process_key")


class MessageArgs(Schema):
    message_name = Text(required=True, validate=validate.Length(min=1, max=255))
    business_key = Text(allow_none=True, validate=validate.Length(max=255))
    correlation_keys = Variables(load_default=dict, metadata={
        "description": "process variables the waiting instance must have (name → value)"})
    variables = Variables(load_default=dict, metadata={"description": "set on the instance with the message"})
    all = fields.Boolean(load_default=False, metadata={"description": "deliver to every matching instance"})


class MessageResultSchema(Schema):
    result_type = fields.String(required=True, metadata={"enum": ["Execution", "ProcessDefinition"]})
    instance_id = fields.String(required=True)
    instance = fields.Nested(lambda: InstanceSchema(), allow_none=True,
                             metadata={"description": "the instance, when the caller may read it"})


class CancelArgs(Schema):
    reason = Text(allow_none=True, validate=validate.Length(max=500))


class DefinitionSchema(Schema):
    id = fields.String(required=True)
    key = fields.String(required=True)
    version = fields.Integer(required=True)
    name = fields.String(allow_none=True)
    deployment_id = fields.String()
    resource = fields.String()
    created_at = LocalDateTime()


class ElementActivitySchema(Schema):
    tasks = fields.Integer()
    timers = fields.Integer()
    messages = fields.Integer()


class DefinitionDetailSchema(DefinitionSchema):
    active_instances = fields.Integer()
    element_activity = fields.Dict(keys=fields.String(), values=fields.Nested(ElementActivitySchema))
    start_form = fields.List(fields.Nested(FormFieldSchema))


class DefinitionListArgs(Schema):
    key = Text()
    latest_only = fields.Boolean(load_default=False)


class DecisionSchema(Schema):
    id = fields.String(required=True)
    key = fields.String(required=True)
    version = fields.Integer(required=True)
    name = fields.String(allow_none=True)
    deployment_id = fields.String()
    resource = fields.String()


class DecisionInputSchema(Schema):
    id = fields.String()
    label = fields.String(allow_none=True)
    expression = fields.String()
    variable = fields.String(allow_none=True, metadata={"description": "the variable the expression reads, "
                                                                       "when it is a plain name"})
    type_ref = fields.String(allow_none=True)


class DecisionOutputSchema(Schema):
    name = fields.String()
    label = fields.String(allow_none=True)
    type_ref = fields.String(allow_none=True)


class DecisionDetailSchema(DecisionSchema):
    hit_policy = fields.String(allow_none=True)
    inputs = fields.List(fields.Nested(DecisionInputSchema))
    outputs = fields.List(fields.Nested(DecisionOutputSchema))


class DecisionListArgs(Schema):
    key = Text()


class EvaluateArgs(Schema):
    variables = Variables(load_default=dict)


class EvaluationSchema(Schema):
    results = fields.List(fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True)), required=True)


class DeploymentSchema(Schema):
    id = fields.String(required=True)
    name = fields.String()
    source = fields.String(allow_none=True)
    tenant_id = fields.String(allow_none=True)
    deployed_at = LocalDateTime()
    deployed_by = fields.String(allow_none=True)


class ResourceSchema(Schema):
    id = fields.String()
    name = fields.String()


class DeploymentDetailSchema(DeploymentSchema):
    resources = fields.List(fields.Nested(ResourceSchema))
    process_definitions = fields.List(fields.Nested(DefinitionSchema))
    decision_definitions = fields.List(fields.Nested(DecisionSchema))


class DeployedDefinitionSchema(Schema):
    id = fields.String(required=True)
    key = fields.String(required=True)
    version = fields.Integer(required=True)
    name = fields.String(allow_none=True)
    resource = fields.String()


class DeployedSchema(Schema):
    deployment_id = fields.String(allow_none=True)
    created = fields.Boolean(metadata={"description": "false when every file was unchanged"})
    process_definitions = fields.List(fields.Nested(DeployedDefinitionSchema))
    decision_definitions = fields.List(fields.Nested(DeployedDefinitionSchema))
    unchanged = fields.List(fields.String(), metadata={"description": "ids of definitions left as they were"})


class DeployFilesArgs(Schema):
    files = fields.List(Upload(), required=True, validate=validate.Length(min=1, max=20),
                        metadata={"description": ".bpmn and .dmn files"})


class DeployFormArgs(Schema):
    name = Text(load_default="upload", validate=validate.Length(min=1, max=255))
    changed_only = fields.Boolean(load_default=True,
                                  metadata={"description": "unchanged processes and decisions keep their version"})


class DeleteDeploymentArgs(Schema):
    cascade = fields.Boolean(load_default=False)


class WorkingDayArgs(Schema):
    day = fields.Date(required=True)


class DayInfoSchema(Schema):
    day = fields.Date()
    is_working = fields.Boolean()
    name = fields.String()
    source = fields.String(metadata={"enum": ["override", "package", "plain_week", "estimate"]})


class WorkingDaysArgs(Schema):
    start = LocalDateTime(required=True)
    days = fields.Integer(required=True, validate=validate.Range(min=0, max=3650))


class MomentSchema(Schema):
    at = LocalDateTime()


class DeadlineSchema(Schema):
    at = LocalDateTime()
    confirmed = fields.Boolean()
    unconfirmed_years = fields.List(fields.Integer())


class ShiftArgs(Schema):
    at = LocalDateTime(required=True)
    rota = Text(load_default="default", validate=validate.Length(min=1, max=64))


class ShiftInfoSchema(Schema):
    code = fields.String()
    name_zh = fields.String()
    name_en = fields.String()
    start = fields.Time()
    end = fields.Time()
    group = fields.String(allow_none=True)


class ShiftSchema(Schema):
    at = LocalDateTime()
    rota = fields.String()
    shift = fields.Nested(ShiftInfoSchema, allow_none=True)
    shift_date = fields.Date(allow_none=True)
    starts_at = LocalDateTime(allow_none=True)
    ends_at = LocalDateTime(allow_none=True)


# ------------------------------------------------------------------------- wiring & auth ----
class _Api(Api):
    ERROR_SCHEMA = ApiErrorSchema

    def _register_error_handlers(self) -> None:
        """/api/v1 answers its own errors (below); the web UI keeps its error pages."""


@bp.record_once
def _init_api(state) -> None:
    app: Flask = state.app
    app.config.setdefault("API_TITLE", "Hospital workflow API · 客服中心流程服务")
    app.config.setdefault("API_VERSION", API_VERSION)
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", state.url_prefix or "/api/v1")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    api = _Api(app, spec_kwargs={"info": {"description": __doc__}})
    api.spec.components.security_scheme("basicAuth", {"type": "http", "scheme": "basic"})
    api.spec.components.security_scheme("sessionCookie", {"type": "apiKey", "in": "cookie", "name": "session"})
    api.spec.options["security"] = [{"basicAuth": []}, {"sessionCookie": []}]
    api.register_blueprint(rest, url_prefix=state.url_prefix or "/api/v1")
    csrf = app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(rest)
    app.extensions["api_v1"] = api
    app.after_request(_allow_header)
    app.before_request(_openapi_needs_sign_in)


def _openapi_needs_sign_in() -> Response | None:
    """The API document is for the hospital's own integrators: signed-in staff or Basic credentials.
    It holds no patient data, but it maps every operation, so outsiders do not get it."""
    if request.blueprint != "api-docs":
        return None
    if basic_user() is None and session_user() is None:
        response = _error(401, "unauthorized", "sign in, or send HTTP Basic credentials of a staff account")
        response.headers["WWW-Authenticate"] = 'Basic realm="hospital-workflow API"'
        return response
    return None


API_PREFIXES = ("/api/", "/engine-rest/")


def _allow_header(response: Response) -> Response:
    """A 405 of the REST APIs names the methods the path takes (RFC 9110); the app's error page
    handler answers routing errors without it."""
    if response.status_code == 405 and "Allow" not in response.headers and request.path.startswith(API_PREFIXES):
        try:
            adapter = current_app.url_map.bind_to_environ(request.environ)
            response.headers["Allow"] = ", ".join(sorted(adapter.allowed_methods()))
        except HTTPException:
            pass
    return response


def _engine() -> WorkflowEngine:
    return current_app.extensions["engine"]


def _user() -> ApiUser:
    return g.api_user


def _error(status: int, code: str, message: str, /, **extra: Any) -> Response:
    response = jsonify({"error": code, "message": message, **extra})
    response.status_code = status
    return response


@rest.before_request
def _authenticate() -> Response | None:
    user = basic_user()
    if user is None:
        user = session_user()
        if user is not None and request.method not in SAFE_METHODS and not request.is_json \
                and not request.headers.get("X-Requested-With"):
            return _error(403, "forbidden", "with the session cookie, send X-Requested-With or a JSON body")
    if user is None:
        response = _error(401, "unauthorized", "sign in, or send HTTP Basic credentials of a staff account")
        if not request.headers.get("X-Requested-With"):
            response.headers["WWW-Authenticate"] = 'Basic realm="hospital-workflow API"'
        return response
    g.api_user = user
    role_check = ROLE_CHECKS.get(request.endpoint or "")
    if role_check is not None:  # before the body is parsed: a refused caller learns nothing from it
        role_check()
    return None


@rest.errorhandler(EngineError)
def _engine_error(exc: EngineError) -> Response:
    body = exc.to_dict()
    body.pop("error", None)
    body.pop("message", None)
    return _error(http_status(exc), exc.code, exc.message, **json_safe(body))


def _flatten(messages: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping):
                out.update(_flatten(value, name))
            else:
                out[name] = "; ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    elif messages:
        out[prefix or "_schema"] = "; ".join(str(v) for v in messages) if isinstance(messages, list) \
            else str(messages)
    return out


@rest.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if messages is not None:
        # webargs puts the location first ({"json": {"field": [...]}}); the field is what matters
        flat = {}
        for location_messages in messages.values() if isinstance(messages, Mapping) else [messages]:
            flat.update(_flatten(location_messages))
        detail = "; ".join(f"{k}: {v}" for k, v in list(flat.items())[:5])
        return _error(status, "invalid_input", f"the request has errors: {detail}", fields=flat)
    name = HTTPStatus(status).phrase.lower().replace(" ", "_") if status in HTTPStatus._value2member_map_ \
        else "error"
    return _error(status, name, exc.description or exc.name)


@rest.errorhandler(RecursionError)
def _too_deep(exc: RecursionError) -> Response:
    return _error(400, "invalid_input", "the request body is nested too deeply")


def _require_deployer() -> None:
    if not _user().can_deploy:
        raise Forbidden("only process owners and administrators may do this")


def _require_canceller() -> None:
    if not access.can_cancel(_user().staff):  # operators may cancel any case, not only those they see
        raise Forbidden("only process operators and administrators may cancel a case")


# Endpoints open to some roles only, checked as soon as the caller is known.
ROLE_CHECKS = {"api_v1.deploy": _require_deployer, "api_v1.delete_deployment": _require_deployer,
               "api_v1.cancel_instance": _require_canceller}


# --------------------------------------------------------------------------------- tasks ----
def _visible_task(task_id: str) -> dict:
    task = _engine().get_task(task_id)
    if not _user().sees_task(task):
        raise NotFound(f"task '{task_id}' does not exist", task_id=task_id)
    return task


def _form_fields(form) -> list[dict]:
    return [{"id": f.id, "label": f.label, "type": f.type, "default": json_safe(f.default), "required": f.required,
             "readonly": f.readonly, "min_length": f.min_length, "max_length": f.max_length,
             "minimum": f.minimum, "maximum": f.maximum,
             "options": [{"id": o[0], "name": o[1]} for o in f.options]} for f in form.fields]


@rest.get("/tasks")
@rest.arguments(TaskListArgs, location="query")
@rest.response(200, TaskPageSchema)
def list_tasks(args: dict) -> dict:
    """Tasks the caller may see, filtered and paged (sorted by due time, priority or creation)."""
    user = _user()
    assignee = args.get("assignee")
    f = TaskQuery(assignee=user.username if assignee == "me" else assignee,
                  candidate_groups=args.get("candidate_group"), unassigned=args.get("unassigned"),
                  process_key=args.get("process_key"), business_key=args.get("business_key"),
                  instance_id=args.get("instance_id"), element_id=args.get("element_id"),
                  overdue=args.get("overdue"), sla_states=args.get("sla_state"), search=args.get("search"),
                  status=args["status"], sort=args["sort"], offset=args["offset"], limit=args["limit"])
    order = {"due": [("due", False), ("priority", True), ("created", False)],
             "priority": [("priority", True), ("due", False), ("created", False)],
             "created": [("created", True)]}[args["sort"]]
    items, total = _engine().query_tasks(f, order=order, visible_to=user.visibility)
    return {"items": items, "total": total, "offset": args["offset"], "limit": args["limit"]}


@rest.get("/tasks/<task_id>")
@rest.response(200, TaskDetailSchema)
def get_task(task_id: str) -> dict:
    """A task and the fields of its form."""
    task = _visible_task(task_id)
    return {**task, "form": _form_fields(_engine().task_form(task_id))}


@rest.post("/tasks/<task_id>/claim")
@rest.response(200, TaskSchema)
def claim_task(task_id: str) -> dict:
    """Take an open task (409 when a colleague has it)."""
    _visible_task(task_id)
    return _engine().claim(task_id, _user().username)


@rest.post("/tasks/<task_id>/unclaim")
@rest.response(200, TaskSchema)
def unclaim_task(task_id: str) -> dict:
    """Give a task back to its groups (the assignee, administrators and the director)."""
    task = _visible_task(task_id)
    user = _user()
    access.authorize_assignment(task, None, user.staff)
    return _engine().unclaim(task_id, user.username)


@rest.post("/tasks/<task_id>/assign")
@rest.arguments(AssignArgs)
@rest.response(200, TaskSchema)
def assign_task(args: dict, task_id: str) -> dict:
    """Hand a task to a colleague (or to nobody, with null)."""
    task = _visible_task(task_id)
    access.authorize_assignment(task, args["assignee"], _user().staff)
    return _engine().assign(task_id, args["assignee"], _user().username)


@rest.post("/tasks/<task_id>/complete")
@rest.arguments(CompleteArgs)
@rest.response(200, InstanceSchema)
def complete_task(args: dict, task_id: str) -> dict:
    """Complete a task with its form's values; 400 with `fields` when the form has errors."""
    _visible_task(task_id)
    return _engine().complete(task_id, args["variables"], user=_user().username)


# ----------------------------------------------------------------------------- instances ----
def _visible_instance(instance_id: str) -> dict:
    instance = _engine().get_instance(instance_id)
    if not access.can_see_instance(instance, _user().staff):
        raise NotFound(f"process instance '{instance_id}' does not exist", instance_id=instance_id)
    return instance


@rest.get("/instances")
@rest.arguments(InstanceListArgs, location="query")
@rest.response(200, InstancePageSchema)
def list_instances(args: dict) -> dict:
    """Instances the caller may see (started, or with a task they can see), newest first."""
    items, total = _engine().query_instances(
        process_key=args.get("process_key"), definition_id=args.get("definition_id"),
        business_key=args.get("business_key"), status=args.get("status"), search=args.get("search"),
        visible_to=_user().visibility, order=[("started_at", True)], offset=args["offset"], limit=args["limit"])
    items = [masking.mask_summary(i, _user().staff) for i in items]  # lists never show personal data in full
    return {"items": items, "total": total, "offset": args["offset"], "limit": args["limit"]}


@rest.get("/instances/<instance_id>")
@rest.response(200, InstanceDetailSchema)
def get_instance(instance_id: str) -> dict:
    """An instance with its variables, active elements, the path taken and its history.

    Phone numbers, ID numbers and addresses are masked (136****2222) unless the caller works on an
    open step of the case that needs them (or is listed in UNMASKED_API_USERS); the read is
    audited. `POST /instances/{id}/variables/{name}/reveal` shows one value in full."""
    return masking.read_instance(_visible_instance(instance_id), _user().staff)


VARIABLES_RESPONSE = {200: {"description": "name → value and type", "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": {"type": "object", "required": ["value", "type"], "properties": {
        "value": {"nullable": True}, "type": {"type": "string", "enum": [
            "String", "Integer", "Long", "Double", "Boolean", "Date", "Null", "Json"]}}}}}}}}


@rest.get("/instances/<instance_id>/variables")
@rest.doc(responses=VARIABLES_RESPONSE)
def instance_variables(instance_id: str) -> Response:
    """The instance's variables with their types (personal data masked as on the instance; the
    read is audited)."""
    instance = _visible_instance(instance_id)
    stored = masking.read_variables(_engine().get_variables(instance_id), _user().staff,
                                    definition_id=instance["definition_id"], instance_id=instance_id,
                                    tasks=instance["tasks"])
    return jsonify(json_safe(stored))


@rest.post("/instances/<instance_id>/variables/<name>/reveal")
@rest.doc(responses={200: {"description": "the value in full", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"name": {"type": "string"}, "value": {"nullable": True}}}}}}})
def reveal_variable(instance_id: str, name: str) -> Response:
    """One variable of a case the caller may see, in full (a masked phone, ID number or address);
    written to the audit log as `reveal`."""
    instance = _visible_instance(instance_id)
    if name not in instance["variables"]:
        raise NotFound(f"process instance '{instance_id}' has no variable '{name}'", instance_id=instance_id,
                       variable=name)
    return jsonify(json_safe({"name": name, "value": masking.reveal_variable(instance, name, _user().staff)}))


@rest.post("/instances")
@rest.arguments(StartArgs)
@rest.response(201, InstanceSchema)
def start_instance(args: dict) -> dict:
    """Start the newest version of a process (or a given version); the start form is validated."""
    engine = _engine()
    form = engine.start_form(args.get("process_key"), definition_id=args.get("definition_id"))
    variables = form.validate(args["variables"])
    return engine.start(args.get("process_key"), definition_id=args.get("definition_id"),
                        business_key=args.get("business_key") or None, variables=variables,
                        user=_user().username)


@rest.post("/messages")
@rest.arguments(MessageArgs)
@rest.response(200, MessageResultSchema(many=True))
def correlate_message(args: dict) -> list[dict]:
    """Deliver a message to the waiting instances the caller may act on (the task list's rule, or a
    sender the receiving element declares in `message.senders`), or start a process at its message
    start event. No match and no permission answer alike: 404."""
    engine, user = _engine(), _user()
    results = engine.correlate_message(args["message_name"], business_key=args.get("business_key") or None,
                                       correlation_keys=args["correlation_keys"], variables=args["variables"],
                                       user=user.username, all_matches=args["all"], caller=user.caller)
    ids = [r["instance"]["id"] for r in results]
    readable = {i["id"] for i in engine.query_instances(instance_ids=ids, visible_to=user.visibility,
                                                        limit=len(ids) or 1)[0]}
    return [{"result_type": r["result_type"], "instance_id": r["instance"]["id"],
             "instance": r["instance"] if r["instance"]["id"] in readable else None} for r in results]


@rest.post("/instances/<instance_id>/cancel")
@rest.arguments(CancelArgs)
@rest.response(200, InstanceSchema)
def cancel_instance(args: dict, instance_id: str) -> dict:
    """Cancel a running instance (process operators and administrators)."""
    _require_canceller()
    engine = _engine()
    engine.cancel(instance_id, user=_user().username, reason=args.get("reason"))
    rows, _ = engine.query_instances(instance_ids=[instance_id])
    return rows[0]


# ------------------------------------------------------------------ deployments & definitions
@rest.get("/definitions")
@rest.arguments(DefinitionListArgs, location="query")
@rest.response(200, DefinitionSchema(many=True))
def list_definitions(args: dict) -> list[dict]:
    """Process definitions, newest version first within each key."""
    return _engine().list_definitions(args.get("key"), latest_only=args["latest_only"])


@rest.get("/definitions/<definition_id>")
@rest.response(200, DefinitionDetailSchema)
def get_definition(definition_id: str) -> dict:
    """A definition with its start form, running instances and what they wait for, per element."""
    engine = _engine()
    definition = engine.get_definition(definition_id)
    return {**definition, "active_instances": engine.count_instances(definition_id=definition_id, status="active"),
            "element_activity": engine.element_activity(definition_id),
            "start_form": _form_fields(engine.start_form(definition_id=definition_id))}


XML_RESPONSE = {200: {"description": "the file as deployed",
                      "content": {"application/xml": {"schema": {"type": "string"}}}}}


@rest.get("/definitions/<definition_id>/xml")
@rest.doc(responses=XML_RESPONSE)
def definition_xml(definition_id: str) -> Response:
    """The BPMN (or DMN) file of a definition, as deployed (a download, never shown as a page)."""
    from web.headers import download

    name, content = _engine().definition_xml(definition_id)
    return download(content, name)


@rest.get("/deployments")
@rest.response(200, DeploymentSchema(many=True))
def list_deployments() -> list[dict]:
    """Deployments, newest first."""
    return list(reversed(_engine().list_deployments()))


@rest.get("/deployments/<deployment_id>")
@rest.response(200, DeploymentDetailSchema)
def get_deployment(deployment_id: str) -> dict:
    """A deployment with its files and the definitions it created."""
    return _engine().get_deployment(deployment_id)


@rest.post("/deployments")
@rest.arguments(DeployFormArgs, location="form")
@rest.arguments(DeployFilesArgs, location="files")
@rest.response(201, DeployedSchema)
def deploy(form: dict, uploads: dict) -> dict:
    """Deploy .bpmn and .dmn files (process owners). A refused file answers 400 naming the
    file, element and reason; nothing of the upload is deployed then."""
    _require_deployer()
    files = []
    for storage in uploads["files"]:
        filename = getattr(storage, "filename", None)
        if not filename or "\x00" in filename or len(filename) > 255:
            raise InvalidInput("every file needs a name of at most 255 characters", field="files")
        files.append((filename, storage.read()))
    result = _engine().deploy(files, name=form["name"], source="api", user=_user().username,
                              changed_only=form["changed_only"])
    return {"deployment_id": result.deployment_id, "created": result.created,
            "process_definitions": result.process_definitions,
            "decision_definitions": result.decision_definitions, "unchanged": result.unchanged}


@rest.delete("/deployments/<deployment_id>")
@rest.arguments(DeleteDeploymentArgs, location="query")
@rest.response(204)
def delete_deployment(args: dict, deployment_id: str) -> None:
    """Delete a deployment (process owners); 409 while it has instances, unless cascade."""
    _require_deployer()
    _engine().delete_deployment(deployment_id, cascade=args["cascade"], user=_user().username)


# ----------------------------------------------------------------------------- decisions ----
@rest.get("/decisions")
@rest.arguments(DecisionListArgs, location="query")
@rest.response(200, DecisionSchema(many=True))
def list_decisions(args: dict) -> list[dict]:
    """Decision definitions, newest version first within each key."""
    return _engine().list_decisions(args.get("key"))


def _decision(definition_id: str) -> dict:
    for x in _engine().list_decisions():
        if x["id"] == definition_id:
            return x
    raise NotFound(f"decision definition '{definition_id}' does not exist")


def decision_table(engine: WorkflowEngine, definition: dict) -> dict:
    """A deployed decision's hit policy, inputs (with the variable each reads) and outputs."""
    name, content = engine.definition_xml(definition["id"])
    decision = dmn.parse_dmn(content, name).decision(definition["key"])
    inputs = [{"id": i.id, "label": i.label, "expression": i.expression_text, "type_ref": i.type_ref,
               "variable": i.expression_text.strip() if i.expression_text.strip().isidentifier() else None}
              for i in decision.inputs]
    outputs = [{"name": o.name, "label": o.label, "type_ref": o.type_ref} for o in decision.outputs]
    if decision.kind == "literal":
        outputs = [{"name": decision.result_name, "label": decision.name, "type_ref": decision.type_ref}]
    return {"hit_policy": decision.hit_policy, "inputs": inputs, "outputs": outputs}


@rest.get("/decisions/<definition_id>")
@rest.response(200, DecisionDetailSchema)
def get_decision(definition_id: str) -> dict:
    """A decision with its inputs and outputs (what a test form asks for)."""
    definition = _decision(definition_id)
    return {**definition, **decision_table(_engine(), definition)}


@rest.post("/decisions/<definition_id>/evaluate")
@rest.arguments(EvaluateArgs)
@rest.response(200, EvaluationSchema)
def evaluate_decision(args: dict, definition_id: str) -> dict:
    """Evaluate a decision with test inputs: Camunda's result list (one entry per matched rule)."""
    results = _engine().evaluate_decision(definition_id=_decision(definition_id)["id"], variables=args["variables"])
    return {"results": json_safe([{k: _number(v) for k, v in row.items()} for row in results])}


def _number(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


# ------------------------------------------------------------------------------ calendar ----
def _calendar_call(function, *args):
    try:
        return function(*args)
    except (ValueError, OverflowError) as exc:  # an unknown rota, a date beyond the calendar
        raise InvalidInput(str(exc)) from exc


@rest.get("/calendar/working-day")
@rest.arguments(WorkingDayArgs, location="query")
@rest.response(200, DayInfoSchema)
def working_day(args: dict) -> dict:
    """Whether a day is a working day in the hospital's calendar (holidays and 调休 included)."""
    info = _calendar_call(_engine().calendar.describe_day, args["day"])
    return {"day": info.day, "is_working": info.is_working, "name": info.name, "source": info.source}


@rest.get("/calendar/add-working-days")
@rest.arguments(WorkingDaysArgs, location="query")
@rest.response(200, MomentSchema)
def add_working_days(args: dict) -> dict:
    """The end of working hours on the n-th working day after the day of `start`."""
    return {"at": _calendar_call(_engine().calendar.add_working_days, args["start"], args["days"])}


@rest.get("/calendar/deadline-working-days")
@rest.arguments(WorkingDaysArgs, location="query")
@rest.response(200, DeadlineSchema)
def deadline_working_days(args: dict) -> dict:
    """As add-working-days, and whether every day counted is confirmed (not an estimate)."""
    deadline = _calendar_call(_engine().calendar.deadline_working_days, args["start"], args["days"])
    return {"at": deadline.at, "confirmed": deadline.confirmed, "unconfirmed_years": list(deadline.unconfirmed_years)}


@rest.get("/calendar/shift")
@rest.arguments(ShiftArgs, location="query")
@rest.response(200, ShiftSchema)
def shift_at(args: dict) -> dict:
    """The shift of a rota on duty at a moment (null when none covers it)."""
    period = _calendar_call(_engine().calendar.shift_period_at, args["at"], args["rota"])
    shift = period.shift if period else None
    return {"at": args["at"], "rota": args["rota"],
            "shift": None if shift is None else {"code": shift.code, "name_zh": shift.name_zh,
                                                 "name_en": shift.name_en, "start": shift.start,
                                                 "end": shift.end, "group": shift.group},
            "shift_date": period.shift_date if period else None,
            "starts_at": period.starts_at if period else None, "ends_at": period.ends_at if period else None}

