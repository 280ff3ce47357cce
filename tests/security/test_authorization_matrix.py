"""Who may call what: one table, role × endpoint → allowed or refused.

Every route of the app must appear in RULES, so an endpoint added without deciding who may call it
fails here. Each endpoint is called by every role with made-up ids: "allowed" means the request got
past authorization (it may still be 400/404/409 for the made-up data; visibility of single tasks and
cases is tested elsewhere), "refused" means 401/403, or the sign-in page for the web pages.
"""

from __future__ import annotations

import re

import pytest

from engine.identity import IdentityService
from tests.rest.conftest import basic
from web import create_app

# Who passes authorization, by rule. Roles: the demo staff (nurse: ward nurse; director: also the
# process operator role) and an external-task worker account.
ROLES = ("anonymous", "nurse", "owner", "director", "admin", "worker")
WHO = {
    "public":    {"anonymous", "nurse", "owner", "director", "admin", "worker"},
    "staff":     {"nurse", "owner", "director", "admin", "worker"},
    "deployer":  {"owner", "admin"},                        # deploy, delete deployments
    "canceller": {"director", "admin"},                     # cancel a case (operator role, admin)
    "admin":     {"admin"},                                 # user admin, audit, patient data requests
    "worker":    {"worker"},                                # fetch, lock and finish external work
    "ext_read":  {"worker", "owner", "director", "admin"},  # read external tasks
    "ext_fix":   {"owner", "admin"},                        # retries, priority, incident resolution
    "incidents": {"owner", "director", "admin"},            # read incidents
    "outbox":    {"director", "admin"},                     # the SMS outbox page
}

RULES: dict[str, str] = {
    # -- web pages --------------------------------------------------------------------------
    "auth.login": "public", "auth.set_language": "public", "static": "public", "auth.logout": "staff",
    "tasks.index": "staff", "tasks.next_task": "staff", "tasks.task_page": "staff", "tasks.claim": "staff",
    "tasks.unclaim": "staff", "tasks.assign": "staff", "tasks.complete": "staff", "tasks.start_menu": "staff",
    "tasks.start": "staff", "tasks.process_diagram": "staff", "tasks.instance_page": "staff",
    "tasks.instance_diagram": "staff", "audit.reveal": "staff",
    "processes.index": "deployer", "processes.process": "deployer", "processes.decision": "deployer",
    "processes.definition_xml": "deployer", "processes.deploy_form": "deployer", "processes.deploy": "deployer",
    "admin.home": "admin", "admin.users": "admin", "admin.create_user": "admin", "admin.edit_user": "admin",
    "admin.update_user": "admin", "admin.reset_password": "admin", "admin.revoke_sessions": "admin",
    "admin.unlock_user": "admin", "admin.groups": "admin", "admin.create_group": "admin",
    "audit.audit_list": "admin",
    "privacy_admin.search_page": "admin", "privacy_admin.search": "admin", "privacy_admin.export": "admin",
    "privacy_admin.case_page": "admin", "privacy_admin.anonymize": "admin", "privacy_admin.erase": "admin",
    "incidents.incident_list": "incidents", "incidents.incident_retry": "ext_fix", "incidents.outbox": "outbox",
    # -- /api/v1 ----------------------------------------------------------------------------
    "api-docs.openapi_json": "staff",
    "api_v1.list_tasks": "staff", "api_v1.get_task": "staff", "api_v1.claim_task": "staff",
    "api_v1.unclaim_task": "staff", "api_v1.assign_task": "staff", "api_v1.complete_task": "staff",
    "api_v1.list_instances": "staff", "api_v1.start_instance": "staff", "api_v1.get_instance": "staff",
    "api_v1.instance_variables": "staff", "api_v1.reveal_variable": "staff", "api_v1.correlate_message": "staff",
    "api_v1.cancel_instance": "canceller",
    "api_v1.list_definitions": "staff", "api_v1.get_definition": "staff", "api_v1.definition_xml": "staff",
    "api_v1.list_decisions": "staff", "api_v1.get_decision": "staff", "api_v1.evaluate_decision": "staff",
    "api_v1.list_deployments": "staff", "api_v1.get_deployment": "staff",
    "api_v1.deploy": "deployer", "api_v1.delete_deployment": "deployer",
    "api_v1.add_working_days": "staff", "api_v1.deadline_working_days": "staff", "api_v1.shift_at": "staff",
    "api_v1.working_day": "staff",
    # -- /engine-rest (Camunda 7) -----------------------------------------------------------
    "engine_rest.version": "staff", "engine_rest.engines": "staff", "engine_rest.not_implemented": "staff",
    "engine_rest.list_deployments": "staff", "engine_rest.count_deployments": "staff",
    "engine_rest.get_deployment": "staff", "engine_rest.deployment_resources": "staff",
    "engine_rest.deployment_resource_data": "staff",
    "engine_rest.create_deployment": "deployer", "engine_rest.delete_deployment": "deployer",
    "engine_rest.list_process_definitions": "staff", "engine_rest.count_process_definitions": "staff",
    "engine_rest.get_process_definition": "staff", "engine_rest.get_process_definition_by_key": "staff",
    "engine_rest.process_definition_xml": "staff", "engine_rest.process_definition_xml_by_key": "staff",
    "engine_rest.start_form_variables": "staff", "engine_rest.start_form_variables_by_key": "staff",
    "engine_rest.start_instance": "staff", "engine_rest.start_instance_by_key": "staff",
    "engine_rest.list_decision_definitions": "staff", "engine_rest.count_decision_definitions": "staff",
    "engine_rest.get_decision_definition": "staff", "engine_rest.get_decision_definition_by_key": "staff",
    "engine_rest.decision_definition_xml": "staff", "engine_rest.decision_definition_xml_by_key": "staff",
    "engine_rest.evaluate_decision": "staff", "engine_rest.evaluate_decision_by_key": "staff",
    "engine_rest.list_tasks": "staff", "engine_rest.query_tasks": "staff", "engine_rest.count_tasks": "staff",
    "engine_rest.count_tasks_post": "staff", "engine_rest.get_task": "staff", "engine_rest.claim_task": "staff",
    "engine_rest.unclaim_task": "staff", "engine_rest.set_assignee": "staff", "engine_rest.complete_task": "staff",
    "engine_rest.submit_task_form": "staff", "engine_rest.task_form_key": "staff",
    "engine_rest.task_form_variables": "staff", "engine_rest.task_variables": "staff",
    "engine_rest.correlate_message": "staff",
    "engine_rest.list_instances": "staff", "engine_rest.query_instances": "staff",
    "engine_rest.count_instances": "staff", "engine_rest.count_instances_post": "staff",
    "engine_rest.get_process_instance": "staff", "engine_rest.instance_variables": "staff",
    "engine_rest.instance_variable": "staff", "engine_rest.delete_instance": "canceller",
    # -- /engine-rest external tasks and incidents ------------------------------------------
    "external_rest.fetch_and_lock": "worker", "external_rest.complete": "worker", "external_rest.failure": "worker",
    "external_rest.bpmn_error": "worker", "external_rest.extend_lock": "worker", "external_rest.lock": "worker",
    "external_rest.unlock": "worker",
    "external_rest.list_tasks": "ext_read", "external_rest.query_tasks": "ext_read",
    "external_rest.count_tasks": "ext_read", "external_rest.count_tasks_post": "ext_read",
    "external_rest.get_task": "ext_read", "external_rest.error_details": "ext_read",
    "external_rest.topic_names": "ext_read",
    "external_rest.set_retries": "ext_fix", "external_rest.set_retries_sync": "ext_fix",
    "external_rest.set_priority": "ext_fix",
    "incident_rest.list_incidents": "incidents", "incident_rest.get_incident": "incidents",
    "incident_rest.count_incidents": "incidents",
    "incident_rest.resolve_incident": "ext_fix", "incident_rest.annotate_incident": "ext_fix",
    "incident_rest.clear_incident_annotation": "ext_fix",
}

WORKER = ("matrix_worker", "Worker-account-2026!")
API_PREFIXES = ("/api/", "/engine-rest/")


@pytest.fixture(scope="module")
def matrix_app(tmp_path_factory):
    from datetime import UTC, datetime

    from engine.clock import FrozenClock
    from tests.conftest import make_engine

    directory = tmp_path_factory.mktemp("matrix")
    engine = make_engine(f"sqlite:///{directory / 'matrix.db'}", FrozenClock(datetime(2026, 3, 2, 1, tzinfo=UTC)),
                         directory)
    identity = IdentityService(engine)
    identity.create_demo_staff()
    identity.create_user(WORKER[0], "接口执行器", WORKER[1], ["external_worker"])
    app = create_app(engine=engine, test_config={"TESTING": True, "WTF_CSRF_ENABLED": False,
                                                 "RATELIMIT_ENABLED": False})
    yield app
    engine.db.dispose()


def routes(app):
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def test_every_endpoint_has_a_rule(matrix_app):
    missing = sorted({rule.endpoint for rule, _ in routes(matrix_app)} - set(RULES))
    assert not missing, f"decide who may call these and add them to RULES: {missing}"
    unknown = sorted(set(RULES) - {rule.endpoint for rule, _ in routes(matrix_app)})
    assert not unknown, f"RULES names endpoints that no longer exist: {unknown}"


def concrete(rule) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: "x" if m.group(1) != "code" else "en", rule.rule)


def outcome(app, role: str, method: str, url: str) -> str:
    client = app.test_client()
    api = url.startswith(API_PREFIXES)
    headers = {}
    if role != "anonymous":
        if api:
            headers = basic(*WORKER) if role == "worker" else basic(role)
        else:
            password = WORKER[1] if role == "worker" else "demo"
            name = WORKER[0] if role == "worker" else role
            signed = client.post("/login", data={"username": name, "password": password})
            assert signed.status_code == 302, f"{role} could not sign in"
    kwargs = {"json": {}} if api and method in ("POST", "PUT", "PATCH") else {}
    if not api and method == "POST":
        kwargs = {"data": {}}
    response = client.open(url, method=method, headers=headers, **kwargs)
    if url == "/login":
        assert response.status_code < 500
        return "allowed"  # a wrong password is an answer, not a refusal of the page
    if response.status_code in (401, 403):
        return "refused"
    if not api and response.status_code in (301, 302, 303) and "/login" in response.headers.get("Location", "") \
            and url != "/logout":
        return "refused"
    if url == "/logout" and role == "anonymous":
        return "refused"  # sign-in required (Flask-Login sends the anonymous to the sign-in page)
    assert response.status_code < 500, f"{method} {url} as {role}: {response.status_code}"
    return "allowed"


def test_who_may_call_what(matrix_app):
    wrong = []
    for rule, method in routes(matrix_app):
        url = concrete(rule)
        expected = WHO[RULES[rule.endpoint]]
        for role in ROLES:
            got = outcome(matrix_app, role, method, url)
            want = "allowed" if role in expected else "refused"
            if got != want:
                wrong.append(f"{method} {rule.rule} as {role}: {got}, expected {want} ({RULES[rule.endpoint]})")
    assert not wrong, "\n".join(wrong)
