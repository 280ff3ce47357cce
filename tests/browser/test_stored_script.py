"""A deployed diagram that carries script (an XHTML <script> in an extension element, an <svg onload>,
an <img onerror>, markup in names and documentation) is opened in a real Chromium through every way
a user or a link reaches its XML: the /api/v1 download, the process pages' download and viewers, the
task pages' viewer, /engine-rest's resource data and its JSON, the refused-upload page. The script
must never run (it would set window.__pwned and document.title, and read the user's task list), the
file is saved instead of shown, and the viewers still draw the diagram and the decision table."""

from __future__ import annotations

import base64
import re

import pytest

from engine.service import TaskQuery
from tests.browser.conftest import TIMEOUT_MS, playwright_api
from tests.rest.conftest import broken_inquiry, inquiry_bpmn
from tests.web.conftest import FIXTURES

pytestmark = pytest.mark.browser

PWNED = "PWNED"


def payload(how: str) -> str:
    """What an attacker runs: marks the page and reads the signed-in user's tasks."""
    return (f"window.__pwned=(window.__pwned||[]).concat('{how}');document.title='{PWNED}';"
            "fetch('/api/v1/tasks').then(function(r){return r.text()}).then(function(t){window.__stolen=t})")


def _attr(js: str) -> str:
    return js.replace("&", "&amp;").replace("'", "&apos;").replace('"', "&quot;").replace("<", "&lt;")


def hostile_extensions() -> str:
    return (
        '<bpmn:extensionElements>'
        f'<html:script xmlns:html="http://www.w3.org/1999/xhtml">{payload("xhtml-script")}</html:script>'
        f'<svg:svg xmlns:svg="http://www.w3.org/2000/svg" onload="{_attr(payload("svg-onload"))}"/>'
        f'<html:img xmlns:html="http://www.w3.org/1999/xhtml" src="x:" onerror="{_attr(payload("img-onerror"))}"/>'
        '</bpmn:extensionElements>'
    )


def hostile(bpmn: bytes) -> bytes:
    """inquiry.bpmn with script in its process' extension elements, the task name and documentation."""
    text = bpmn.decode()
    name_markup = _attr(f'<img src=x onerror="{payload("name-markup")}">')
    text = re.sub(r'(<bpmn:process id="inquiry"[^>]*>)',
                  lambda m: m.group(1) + f"<bpmn:documentation>{name_markup}</bpmn:documentation>"
                  + hostile_extensions(), text, count=1)
    text = text.replace('name="回答咨询"', f'name="回答咨询 {name_markup}"')
    assert text.count(PWNED) >= 4, "the payload went in"
    return text.encode()


def hostile_decision() -> bytes:
    text = (FIXTURES / "dmn" / "triage.dmn").read_text()
    markup = _attr(f'<img src=x onerror="{payload("dmn-markup")}">')
    text = text.replace(
        '<decision id="triage" name="分诊">',
        f'<decision id="triage" name="分诊">'
        f'<description>{markup}</description>'
        '<extensionElements>'
        f'<html:script xmlns:html="http://www.w3.org/1999/xhtml">{payload("dmn-script")}</html:script>'
        '</extensionElements>', 1)
    text = text.replace('<rule id="Rule_1">', f'<rule id="Rule_1"><description>{markup}</description>', 1)
    text = text.replace('label="类别"', f'label="类别 {markup}"', 1)
    assert text.count(PWNED) >= 4
    return text.encode()


def assert_inert(page, where: str) -> None:
    """No script from the file ran in any frame of the page."""
    page.wait_for_timeout(300)  # an onload/onerror would have fired by now
    for frame in page.frames:
        try:
            ran = frame.evaluate("() => [window.__pwned || null, document.title, window.__stolen || null]")
        except playwright_api.Error:  # a sandboxed or detached frame: nothing of ours can run there
            continue
        assert ran[0] is None and ran[1] != PWNED and ran[2] is None, f"{where}: the file's script ran: {ran}"


def follow_link(page, url: str):
    """Opens url as a link would, from a page of the app; returns the download, or None if the
    browser showed the response as a page."""
    page.goto("/")
    downloads = []
    page.once("download", lambda d: downloads.append(d))
    try:
        page.goto(url)
    except playwright_api.Error as exc:  # Chromium aborts the navigation when it becomes a download
        if "Download is starting" not in str(exc) and "net::ERR_ABORTED" not in str(exc):
            raise
    assert_inert(page, url)
    return downloads[0] if downloads else None


@pytest.fixture
def hostile_deployment(live_server):
    engine = live_server.engine
    result = engine.deploy([("inquiry.bpmn", hostile(inquiry_bpmn())), ("triage.dmn", hostile_decision())],
                           name="hostile", user="owner")
    process = result.process_definitions[0]
    decision = result.decision_definitions[0]
    resources = {r["name"]: r["id"] for r in engine.get_deployment(result.deployment_id)["resources"]}
    return {"process": process, "decision": decision, "deployment_id": result.deployment_id,
            "resources": resources}


def test_links_to_the_xml_download_it_and_never_run_it(login_as, browser, live_server, hostile_deployment):
    process, decision = hostile_deployment["process"], hostile_deployment["decision"]
    nurse = login_as("nurse")
    for url in (f"/api/v1/definitions/{process['id']}/xml", f"/api/v1/definitions/{decision['id']}/xml"):
        saved = follow_link(nurse, url)
        assert saved is not None, f"{url} was shown as a page, not saved"
        assert saved.suggested_filename in ("inquiry.bpmn", "triage.dmn")
        with open(saved.path(), "rb") as f:
            assert PWNED.encode() in f.read()  # the file as deployed, nothing removed
    assert nurse.url.endswith("/") and nurse.locator("#logout").is_visible()

    owner = login_as("owner")
    for url in (f"/processes/definitions/{process['id']}/xml",
                f"/processes/definitions/{process['id']}/xml?download=1",
                f"/processes/definitions/{decision['id']}/xml"):
        assert follow_link(owner, url) is not None, url

    # /engine-rest answers HTTP Basic credentials, e.g. a browser that has them for the Cockpit
    token = base64.b64encode(b"owner:demo").decode()
    context = browser.new_context(base_url=live_server.url, extra_http_headers={"Authorization": f"Basic {token}"})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        rest = context.new_page()
        deployment_id = hostile_deployment["deployment_id"]
        for name, resource_id in hostile_deployment["resources"].items():
            url = f"/engine-rest/deployment/{deployment_id}/resources/{resource_id}/data"
            saved = follow_link(rest, url)
            assert saved is not None and saved.suggested_filename == name
        # the XML inside JSON is shown as text
        for url in (f"/engine-rest/process-definition/{process['id']}/xml",
                    f"/engine-rest/decision-definition/{decision['id']}/xml"):
            rest.goto(url)
            assert_inert(rest, url)
            assert PWNED in rest.locator("body").inner_text()
    finally:
        context.close()


def test_the_viewers_draw_the_diagram_without_running_its_script(login_as, live_server, hostile_deployment):
    engine = live_server.engine
    owner = login_as("owner")
    owner.goto("/processes/inquiry")
    owner.locator('#process-diagram[data-rendered="true"]').wait_for()
    assert owner.locator('#process-diagram g.djs-element[data-element-id="answer"]').count() == 1
    assert "回答咨询 <img src=x" in owner.locator("#process-diagram").inner_text()  # markup shown as text
    assert_inert(owner, "process page")

    owner.goto("/processes/decisions/triage")
    owner.locator('#decision-view[data-rendered="true"]').wait_for()
    table = owner.locator("#decision-view")
    assert "类别 <img src=x" in table.inner_text() and '"fast"' in table.inner_text()
    assert_inert(owner, "decision page")

    # the refused upload is drawn from the uploaded bytes embedded in the page
    owner.goto("/processes/deploy")
    owner.set_input_files("#deploy-files", files=[{"name": "inquiry.bpmn", "mimeType": "text/xml",
                                                   "buffer": hostile(broken_inquiry())}])
    owner.click("#deploy-submit")
    owner.locator('#refused-diagram[data-rendered="true"]').wait_for()
    assert owner.locator('#refused-diagram g.djs-element.refused[data-element-id="Flow_no"]').count() == 1
    assert_inert(owner, "refused upload")

    # the task pages draw the instance's diagram from JSON
    desk = login_as("frontdesk")
    desk.goto("/start/inquiry")
    desk.locator('.diagram[data-rendered="true"]').wait_for()
    assert_inert(desk, "start page")
    desk.goto("/start/inquiry/diagram.json")
    assert_inert(desk, "diagram.json")
    instance = engine.start("inquiry", business_key="ZX-X1", user="frontdesk",
                            variables={"dueAt": "2026-03-02T11:00:00+08:00", "urgent": False})
    task = engine.list_tasks(TaskQuery(business_key="ZX-X1"))[0]
    desk.goto(f"/tasks/{task['id']}")
    desk.locator('.diagram[data-rendered="true"]').wait_for()
    assert desk.locator('.diagram g.djs-element.hl-current[data-element-id="answer"]').count() == 1
    assert "回答咨询 <img src=x" in desk.locator("h1").inner_text()
    assert_inert(desk, "task page")
    desk.goto(f"/instances/{instance['id']}")
    desk.locator('.diagram[data-rendered="true"]').wait_for()
    assert_inert(desk, "instance page")
