"""The hospital's notification worker: templates, masking, the outbox, retries and incidents, the
HTTP gateway against a local server, and the admin pages."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from engine.models import OutboxMessage
from engine.notify import (
    ConsoleGateway,
    GatewayError,
    HttpGateway,
    MessageError,
    NotifyWorker,
    gateway_from_env,
    list_outbox,
    mask_phone,
    normalize_mobile,
    render,
    start_worker_thread,
)
from engine.service import TaskQuery
from tests.external.conftest import start_simple
from tests.web.conftest import StaffClient

PHONE = "13800138000"
RECEIPT_TEXT = "您的投诉已受理，编号TS-20260302-0001。我们将在2026年3月9日前向您反馈处理结果。"


def start_complaint(engine, phone=PHONE, case_no="TS-20260302-0001", **extra):
    return engine.start("complaint_receipt_sms", business_key=case_no, variables={
        "complainantPhone": phone, "caseNo": case_no, "feedbackDue": "2026-03-09T17:00:00+08:00",
        "patientName": "张三", **extra})


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class FlakyGateway:
    name = "flaky"

    def __init__(self, failures: int):
        self.failures = failures
        self.sent: list[tuple[str, str]] = []

    def send(self, phone, text, *, reference, template=None):
        if self.failures > 0:
            self.failures -= 1
            raise GatewayError("provider answered HTTP 503")
        self.sent.append((phone, text))
        return f"msg-{len(self.sent)}"


# -- texts and numbers -----------------------------------------------------------------------

def test_phone_numbers_are_masked_and_checked():
    assert mask_phone("13800138000") == "138****8000"
    assert mask_phone("+86 138-0013-8000") == "138****8000"
    assert mask_phone("+4915112345678") == "491******5678"
    assert normalize_mobile("+86 138 0013 8000") == "13800138000"
    assert normalize_mobile("+4915112345678") == "+4915112345678"
    for bad in ("", None, "0571-88888888", "12345"):
        with pytest.raises(MessageError):
            normalize_mobile(bad)


def test_templates_fill_in_chinese_and_english(engine):
    tz = engine.settings.tz
    values = {"caseNo": "TS-1", "feedbackDue": "2026-03-09T17:00:00+08:00"}
    assert render("complaint_receipt", values, tz) == \
        "您的投诉已受理，编号TS-1。我们将在2026年3月9日前向您反馈处理结果。"
    assert render("complaint_receipt", values, tz, hotline="0571-12345") == \
        "您的投诉已受理，编号TS-1。我们将在2026年3月9日前向您反馈处理结果。如有疑问请致电0571-12345。"
    assert render("complaint_receipt", values, tz, language="en") == \
        "Your complaint has been registered as TS-1. We will tell you the outcome by 2026-03-09."
    escort = {"ward": "心内科3病区", "bedNo": "12", "patientName": "李四", "pickupDue": "2026-03-02T02:30:00+00:00",
              "destination": "影像科CT室"}
    assert render("escort_assigned", escort, tz) == \
        "陪检任务：心内科3病区12床 李四，请于3月2日 10:30前接到患者，送至影像科CT室。"
    callback = {"patientName": "王五", "callbackDue": "2026-03-05"}
    assert render("callback_notice", callback, tz, now=engine.clock.now()) == \
        "王五您好，客服中心将于2026年3月5日前后致电回访您出院后的康复情况，请留意来电。"
    late = render("callback_notice", {**callback, "callbackDue": "2026-02-20"}, tz, now=engine.clock.now())
    assert late.startswith("王五您好，客服中心将于近日致电回访")
    assert "已超过处理时限（3月2日 11:00）" in render(
        "overdue_escalation", {"caseNo": "TS-2", "taskName": "投诉调查", "dueAt": "2026-03-02T11:00:00+08:00"}, tz)
    with pytest.raises(MessageError, match="caseNo"):
        render("complaint_receipt", {"feedbackDue": "2026-03-09"}, tz)
    with pytest.raises(MessageError, match="unknown template"):
        render("birthday", {}, tz)


# -- the worker, end to end ------------------------------------------------------------------

def test_worker_thread_sends_the_receipt_and_records_it_masked(ext_engine, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(ext_engine.external_tasks, "recheck_seconds", 60.0)  # only the new task can wake it
    worker = start_worker_thread(ext_engine, ConsoleGateway(), poll_ms=30_000)
    try:
        began = time.monotonic()
        inst = start_complaint(ext_engine)
        assert wait_for(lambda: ext_engine.list_tasks(TaskQuery(instance_id=inst["id"]))), "the SMS was not sent"
        assert time.monotonic() - began < 10  # the new task woke the waiting worker
    finally:
        worker.stop()
    assert not worker.is_alive()
    rows, total = list_outbox(ext_engine)
    assert total == 1
    row = rows[0]
    assert row["recipient_masked"] == "138****8000" and row["status"] == "sent"
    assert row["text"] == RECEIPT_TEXT and row["template"] == "complaint_receipt"
    assert row["instance_id"] == inst["id"] and row["business_key"] == "TS-20260302-0001"
    assert row["gateway"] == "console" and row["attempt"] == 1
    info = ext_engine.get_instance(inst["id"])
    assert info["variables"]["receiptSmsStatus"] == "sent"  # the output mapping read the worker's result
    assert "phone" not in info["variables"] and "notifyText" not in info["variables"]
    assert ext_engine.list_tasks(TaskQuery(instance_id=inst["id"]))[0]["element_id"] == "Activity_review"
    assert PHONE not in caplog.text and "138****8000" in caplog.text


def test_gateway_failures_retry_with_back_off_then_incident_then_retry(ext_engine, clock):
    gateway = FlakyGateway(failures=10)
    worker = NotifyWorker(ext_engine, gateway, worker_id="sms-1", retries=2, backoff_ms=(60_000, 300_000))
    service = ext_engine.external_tasks
    inst = start_complaint(ext_engine)
    assert worker.run_once() == 1  # attempt 1 fails: 2 retries left, back in a minute
    task = service.list()[0]
    assert task["retries"] == 2 and "503" in task["error_message"]
    assert worker.run_once() == 0
    clock.advance(seconds=61)
    assert worker.run_once() == 1  # attempt 2 fails: 1 retry left, back in five minutes
    clock.advance(seconds=61)
    assert worker.run_once() == 0
    clock.advance(minutes=5)
    assert worker.run_once() == 1  # attempt 3 fails: no retries left
    assert service.list()[0]["retries"] == 0
    [incident] = service.query_incidents()[0]
    assert incident["instance_id"] == inst["id"] and "SMS not sent" in incident["message"]
    clock.advance(hours=1)
    assert worker.run_once() == 0  # never silently retried or lost
    failed, total = list_outbox(ext_engine, status="failed")
    assert total == 3 and [r["attempt"] for r in failed] == [3, 2, 1]

    gateway.failures = 0  # the provider is back; an administrator retries
    service.retry_incident(incident["id"], user="admin")
    assert worker.run_once() == 1
    assert gateway.sent == [(PHONE, RECEIPT_TEXT)]
    assert list_outbox(ext_engine, status="sent")[1] == 1
    assert service.count_open_incidents() == 0
    assert ext_engine.list_tasks(TaskQuery(instance_id=inst["id"]))[0]["element_id"] == "Activity_review"


def test_a_message_that_cannot_be_made_is_an_incident_at_once(ext_engine):
    worker = NotifyWorker(ext_engine, FlakyGateway(0), worker_id="sms-1")
    start_complaint(ext_engine, phone="0571-88888888")
    start_simple(ext_engine, "notify", business_key="NO-TEMPLATE")
    assert worker.run_once() == 2
    incidents = ext_engine.external_tasks.query_incidents()[0]
    messages = sorted(i["message"] for i in incidents)
    assert len(messages) == 2
    assert any("not a mobile number" in m for m in messages)
    assert any("no phone number" in m or "unknown template" in m for m in messages)
    assert list_outbox(ext_engine)[1] == 0


def test_a_sent_message_is_not_sent_twice_when_the_completion_failed(ext_engine, clock, monkeypatch):
    gateway = FlakyGateway(0)
    worker = NotifyWorker(ext_engine, gateway, worker_id="sms-1", lock_duration_ms=10_000)
    inst = start_complaint(ext_engine)
    service = ext_engine.external_tasks
    original = service.complete
    monkeypatch.setattr(service, "complete", lambda *a, **k: (_ for _ in ()).throw(
        __import__("engine.errors", fromlist=["Conflict"]).Conflict("database went away")))
    assert worker.run_once() == 1
    assert len(gateway.sent) == 1 and service.count() == 1
    monkeypatch.setattr(service, "complete", original)
    clock.advance(seconds=11)  # the lock expires; the task is fetched again
    assert worker.run_once() == 1
    assert len(gateway.sent) == 1  # only completed this time
    assert ext_engine.list_tasks(TaskQuery(instance_id=inst["id"]))[0]["element_id"] == "Activity_review"


def test_recipients_from_the_staff_directory(ext_engine):
    from engine.identity import IdentityService

    identity = IdentityService(ext_engine)
    identity.create_demo_staff()  # every demo account has 13800138000
    identity.create_demo_user("deputy", "副主任 何主任", ["director"], phone="13900139000")
    gateway = FlakyGateway(0)
    worker = NotifyWorker(ext_engine, gateway, worker_id="sms-1")
    overdue = {"template": "overdue_escalation", "caseNo": "TS-5", "taskName": "投诉调查",
               "dueAt": "2026-03-02T11:00:00+08:00"}
    by_user = start_simple(ext_engine, "notify", business_key="TS-5", recipientUser="head", **overdue)
    by_group = start_simple(ext_engine, "notify", business_key="TS-6", recipientGroup="director", **overdue)
    nobody = start_simple(ext_engine, "notify", business_key="TS-7", recipientGroup="logistics_night", **overdue)
    assert worker.run_once() == 3
    assert sorted(p for p, _text in gateway.sent) == [PHONE, PHONE, "13900139000"]
    assert all("督办提醒：TS-5“投诉调查”已超过处理时限（3月2日 11:00）" in text for _p, text in gateway.sent)
    for inst in (by_user, by_group):
        assert ext_engine.get_instance(inst["id"])["status"] == "completed"
    [incident] = ext_engine.external_tasks.query_incidents()[0]
    assert incident["instance_id"] == nobody["id"] and "logistics_night" in incident["message"]
    masked = sorted(r["recipient_masked"] for r in list_outbox(ext_engine)[0])
    assert masked == ["138****8000", "138****8000", "139****9000"]


# -- the HTTP gateway ------------------------------------------------------------------------

class _Provider(BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, dict | str, float]]] = []
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append({"body": json.loads(body), "auth": self.headers.get("Authorization"),
                                    "key": self.headers.get("Idempotency-Key"), "path": self.path})
        status, payload, delay = type(self).answers.pop(0) if type(self).answers else (200, {"id": "ok"}, 0)
        time.sleep(delay)
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def provider():
    _Provider.answers, _Provider.received = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/sms/send", _Provider
    server.shutdown()
    server.server_close()


def test_http_gateway_posts_json_and_reads_failures(provider):
    url, handler = provider
    gateway = HttpGateway(url, "secret-token", timeout=0.5)
    handler.answers = [(200, {"messageId": "SM-1"}, 0), (500, "upstream error", 0), (200, {}, 1.5),
                       (202, "accepted", 0)]
    assert gateway.send(PHONE, "您好", reference="task-1", template="complaint_receipt") == "SM-1"
    sent = handler.received[0]
    assert sent["body"] == {"to": PHONE, "text": "您好", "reference": "task-1", "template": "complaint_receipt"}
    assert sent["auth"] == "Bearer secret-token" and sent["key"] == "task-1" and sent["path"] == "/sms/send"
    with pytest.raises(GatewayError, match="HTTP 500"):
        gateway.send(PHONE, "x", reference="task-2")
    with pytest.raises(GatewayError, match="did not answer"):
        gateway.send(PHONE, "x", reference="task-3")
    assert gateway.send(PHONE, "x", reference="task-4") == "HTTP 202"


def test_http_gateway_from_the_environment_end_to_end(ext_engine, provider):
    url, handler = provider
    gateway = gateway_from_env({"SMS_GATEWAY": "http", "SMS_HTTP_URL": url, "SMS_HTTP_TOKEN": "t0k",
                                "SMS_HTTP_TIMEOUT": "2"})
    assert isinstance(gateway, HttpGateway)
    handler.answers = [(503, "busy", 0), (200, {"id": "SM-9"}, 0)]
    worker = NotifyWorker(ext_engine, gateway, worker_id="sms-http", backoff_ms=(0,))
    inst = start_complaint(ext_engine)
    assert worker.run_once() == 1  # 503: failure, retry at once (back-off 0)
    assert worker.run_once() == 1
    assert [r["body"]["text"] for r in handler.received] == [RECEIPT_TEXT, RECEIPT_TEXT]
    with ext_engine.db.reader() as s:
        rows = s.query(OutboxMessage).order_by(OutboxMessage.id).all()
        assert [(r.status, r.result) for r in rows] == [("failed", "the SMS gateway answered HTTP 503: busy"),
                                                        ("sent", "SM-9")]
    assert ext_engine.list_tasks(TaskQuery(instance_id=inst["id"]))[0]["element_id"] == "Activity_review"
    with pytest.raises(ValueError):
        gateway_from_env({"SMS_GATEWAY": "carrier-pigeon"})
    assert isinstance(gateway_from_env({}), ConsoleGateway)


# -- the pages -------------------------------------------------------------------------------

def signed_in(app, username):
    client = StaffClient(app.test_client())
    assert client.login(username).status_code == 302
    return client


def test_admin_sees_incidents_and_retries_them(app, ext_engine):
    worker = NotifyWorker(ext_engine, FlakyGateway(5), worker_id="sms-1", retries=0)
    start_complaint(ext_engine)
    worker.run_once()
    [incident] = ext_engine.external_tasks.query_incidents()[0]

    admin = signed_in(app, "admin")
    page = admin.get("/admin/incidents")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "异常事件" in html and incident["id"] in html and "SMS not sent" in html and "TS-20260302-0001" in html
    response = admin.post(f"/admin/incidents/{incident['id']}/retry", {"retries": "2"}, follow=True)
    assert response.status_code == 200 and "已重新排队" in response.get_data(as_text=True)
    assert ext_engine.external_tasks.count_open_incidents() == 0
    assert "没有需要处理的异常事件" in admin.get("/admin/incidents").get_data(as_text=True)
    assert incident["id"] in admin.get("/admin/incidents?state=resolved").get_data(as_text=True)

    assert signed_in(app, "director").get("/admin/incidents").status_code == 200
    assert signed_in(app, "director").post(f"/admin/incidents/{incident['id']}/retry").status_code == 403
    assert signed_in(app, "frontdesk").get("/admin/incidents").status_code == 403
    assert app.test_client().get("/admin/incidents").status_code == 302  # to the login page


def test_outbox_page_shows_masked_numbers_only(app, ext_engine):
    NotifyWorker(ext_engine, FlakyGateway(0), worker_id="sms-1").run_once()  # nothing yet
    start_complaint(ext_engine)
    NotifyWorker(ext_engine, FlakyGateway(0), worker_id="sms-1").run_once()
    for username in ("director", "admin"):
        html = signed_in(app, username).get("/admin/outbox").get_data(as_text=True)
        assert "138****8000" in html and PHONE not in html
        assert RECEIPT_TEXT in html and "投诉受理回执" in html and "已发送" in html
    director = signed_in(app, "director")
    assert "暂无短信记录" in director.get("/admin/outbox?status=failed").get_data(as_text=True)
    assert "138****8000" in director.get("/admin/outbox?q=TS-20260302").get_data(as_text=True)
    assert signed_in(app, "owner").get("/admin/outbox").status_code == 403
