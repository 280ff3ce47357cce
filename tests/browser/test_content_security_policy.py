"""Under the Content-Security-Policy (only the app's own script files, no inline script) every main
page still works in a real Chromium, for an administrator and for a nurse: the task list, the start
form, the task page and its form, the instance page, the process pages with the BPMN and DMN
viewers, the admin pages, the error pages, the login page and the language switch. Any console
message about the policy, any other console error or any uncaught page error fails the test."""

from __future__ import annotations

import re

import pytest

from engine.service import TaskQuery
from tests.browser.conftest import TIMEOUT_MS
from tests.web.conftest import start_request

pytestmark = pytest.mark.browser

# what the browser may log without anything being wrong: a page's own 4xx status (the refused
# login, a form with errors, the error pages this test opens on purpose, /favicon.ico that there is
# none of) -- but never for a script or style sheet; and dmn-js' published bundle, built with
# Inferno's development flag, says so on every page
PAGE_STATUS = re.compile(r"Failed to load resource: the server responded with a status of 4\d\d")
VENDOR_NOTE = "using a minified copy of the development build of Inferno"


class Console:
    """Collects what a page reports: console errors and warnings, uncaught errors, CSP violations."""

    def __init__(self, page, who: str):
        self.who = who
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        # the browser's own report of a refused resource (init scripts are not subject to the CSP)
        page.add_init_script("""
            document.addEventListener("securitypolicyviolation", function (e) {
              console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline")
                            + " at " + e.sourceFile + ":" + e.lineNumber);
            });""")

    def _console(self, message) -> None:
        text = message.text
        url = message.location.get("url") or ""
        if message.type == "error" and (VENDOR_NOTE in text
                                        or (PAGE_STATUS.search(text) and "/static/" not in url)):
            return
        if message.type in ("error", "warning") or "Content Security Policy" in text:
            self.problems.append(f"{message.type}: {text} ({url})")

    def assert_clean(self, where: str) -> None:
        assert not self.problems, f"{self.who} on {where}: " + "\n".join(self.problems)


def visit(page, console: Console, url: str, ready: str | None = None) -> None:
    response = page.goto(url)
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self';" in policy and "unsafe" not in policy.split("style-src-attr")[0], policy
    if ready:
        page.locator(ready).first.wait_for()
    page.wait_for_load_state("networkidle")
    console.assert_clean(url)


def test_every_main_page_runs_under_the_policy(login_as, browser, live_server):
    engine = live_server.engine
    # the login page, before anyone signs in
    context = browser.new_context(base_url=live_server.url, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    anonymous = context.new_page()
    console = Console(anonymous, "anonymous")
    visit(anonymous, console, "/login", "#login-form")
    anonymous.fill("#username", "nurse")
    anonymous.fill("#password", "wrong")
    anonymous.click("#login-form button[type=submit]")
    anonymous.locator(".flash").wait_for()
    console.assert_clean("a refused login")
    context.close()

    start_request(engine, "SR-CSP1")
    first = engine.list_tasks(TaskQuery(business_key="SR-CSP1"))[0]
    engine.assign(first["id"], "nurse", user="admin")
    engine.start("inquiry", business_key="ZX-CSP", user="frontdesk",
                 variables={"dueAt": "2026-03-02T11:00:00+08:00", "urgent": True})

    admin = login_as("admin")
    console = Console(admin, "admin")
    visit(admin, console, "/", "#logout")
    admin.click("#start-menu summary")
    assert admin.locator("#start-menu .menu-panel").is_visible()
    admin.keyboard.press("Escape")
    visit(admin, console, "/start", "main")
    visit(admin, console, "/start/service_request", '.diagram[data-rendered="true"]')
    visit(admin, console, f"/tasks/{first['id']}", '.diagram[data-rendered="true"]')
    visit(admin, console, f"/instances/{first['instance_id']}", '.diagram[data-rendered="true"]')
    visit(admin, console, "/processes/", "#process-table")
    visit(admin, console, "/processes/inquiry", '#process-diagram[data-rendered="true"]')
    assert admin.locator('.activity-overlay[data-element="answer"] .activity-tasks').inner_text() == "1"
    visit(admin, console, "/processes/decisions/service_tier", '#decision-view[data-rendered="true"]')
    assert admin.locator("#decision-view table").count() >= 1
    visit(admin, console, "/processes/deploy", "#deploy-files")
    visit(admin, console, "/admin/users", "main")
    visit(admin, console, "/admin/users/nurse", "main")
    visit(admin, console, "/admin/groups", "main")
    visit(admin, console, "/admin/incidents", "#state")
    # the state filter applies when chosen (it was an inline onchange handler)
    values = admin.locator("#state option").evaluate_all("options => options.map(o => o.value)")
    other = next(v for v in values if v != admin.locator("#state").input_value())
    admin.select_option("#state", other)
    admin.wait_for_url(re.compile(rf"/admin/incidents\?state={other}$"))
    console.assert_clean("the incident filter")
    visit(admin, console, "/admin/outbox", "main")
    # the error page's "back" button goes back (it was a javascript: link)
    visit(admin, console, "/processes/no-such-process", ".error-card")
    admin.click("[data-history-back]")
    admin.wait_for_url(re.compile(r"/admin/outbox$"))
    console.assert_clean("the error page's back button")
    admin.click("#lang-en")
    admin.wait_for_load_state("networkidle")
    assert admin.locator("html").get_attribute("lang") == "en"
    console.assert_clean("the language switch")
    admin.click("#lang-zh_CN")
    admin.wait_for_load_state("networkidle")
    assert admin.locator("html").get_attribute("lang") == "zh-CN"

    nurse = login_as("nurse")
    console = Console(nurse, "nurse")
    visit(nurse, console, "/", "#logout")
    visit(nurse, console, "/start", "main")
    visit(nurse, console, "/start/service_request", '.diagram[data-rendered="true"]')
    nurse.fill("#field-patientName", "李四")
    nurse.fill("#field-patientNo", "P0002")
    nurse.select_option("#field-category", "billing")
    nurse.fill("#field-description", "病房陪护咨询")
    nurse.click("#submit-start")
    nurse.wait_for_url(re.compile(r"/instances/.+\?started=1"))
    nurse.locator('.diagram[data-rendered="true"]').wait_for()
    console.assert_clean("the started instance")
    # her task: the form refuses a missing answer (server side), then completes
    visit(nurse, console, f"/tasks/{first['id']}", '.diagram[data-rendered="true"]')
    nurse.evaluate("document.getElementById('task-form').noValidate = true")
    nurse.click("#complete")
    nurse.locator(".field-error").first.wait_for()
    console.assert_clean("the task form with errors")
    nurse.fill("#field-resolution", "已协助患者家属办理陪护手续")
    nurse.click("#complete")
    nurse.wait_for_url(re.compile(r"/$"))
    console.assert_clean("the completed task")
    visit(nurse, console, "/admin/users", ".error-card")  # 403 for a nurse
    visit(nurse, console, "/processes/", ".error-card")
    nurse.click("#lang-en")
    nurse.wait_for_load_state("networkidle")
    assert nurse.locator("html").get_attribute("lang") == "en"
    console.assert_clean("the language switch")
