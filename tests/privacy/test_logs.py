"""Logs without patient data: SMS are logged by template, reference and masked number (never the
text with the patient's name, ward and bed), and the served app's request lines carry no query
values (a search for a phone number or a name)."""

from __future__ import annotations

import logging
import os

from engine.external import ExternalTaskQuery
from engine.identity import IdentityService
from engine.notify import ConsoleGateway, GatewayError, HttpGateway, NotifyWorker, list_outbox
from engine.privacy import PatientDataFilter, scrub_log_line
from engine.service import TaskQuery
from tests.privacy.conftest import PHONE, discharge

ESCORT_PHONE = "13922220003"
ESCORT = {"patientName": "孙桂芳", "patientNo": "ZY20260288", "ward": "心内科一病区", "bedNo": "加17",
          "destination": "影像科", "destinationRoom": "CT2室", "mobility": "轮椅", "oxygen": True,
          "drips": False, "isolation": False, "urgency": "普通", "wardPhone": "6021"}
SEARCHED = "13912345678"


def send_sms(engine) -> int:
    return NotifyWorker(engine, ConsoleGateway(), worker_id="sms-worker", hotline="").run_once()


def test_sms_of_a_callback_and_an_escort_leave_no_patient_data_in_the_logs(hospital, caplog):
    caplog.set_level(logging.DEBUG)
    IdentityService(hospital).create_user("escort2", "陪检员 孙伟", "Peijian-2026-mima", ["escort"],
                                          phone=ESCORT_PHONE)
    discharge(hospital)  # the callback notice: "周淑英您好，客服中心将于…致电回访…"
    iid = hospital.start("escort_request", business_key="PJ-0001", user="nurse", variables=ESCORT)["id"]
    [assign] = hospital.list_tasks(TaskQuery(instance_id=iid))
    hospital.claim(assign["id"], "dispatcher")
    hospital.complete(assign["id"], {"escortUser": "escort2", "escortName": "孙伟"}, user="dispatcher")
    assert send_sms(hospital) == 2
    logged = caplog.text
    assert "SMS to 136****2222 recorded (template callback_notice" in logged
    assert "SMS to 139****0003 recorded (template escort_assigned" in logged
    for secret in (PHONE, ESCORT_PHONE, "周淑英", "孙桂芳", "心内科一病区", "加17", "内科二病区"):
        assert secret not in logged, secret


def test_a_provider_answer_echoing_the_message_stays_out_of_logs_and_incidents(hospital, caplog, monkeypatch):
    class Echo:
        status_code = 500
        text = "rejected: 周淑英您好，客服中心将于近日致电回访"

    monkeypatch.setattr("requests.post", lambda *a, **k: Echo())
    caplog.set_level(logging.INFO)
    iid = discharge(hospital)
    worker = NotifyWorker(hospital, HttpGateway("https://sms.example.test/send"), worker_id="w", hotline="")
    assert worker.run_once() == 1
    assert "HTTP 500" in caplog.text and "周淑英" not in caplog.text and PHONE not in caplog.text
    tasks, _total = hospital.external_tasks.query(ExternalTaskQuery(instance_id=iid))
    [failed] = [t for t in tasks if t["error_message"]]
    assert failed["error_message"] == "短信发送失败 / SMS not sent: the SMS gateway answered HTTP 500"
    [row], _total = list_outbox(hospital)  # the administrators' outbox keeps the provider's answer
    assert row["status"] == "failed" and row["result"].startswith("the SMS gateway answered HTTP 500: rejected")


def test_gateway_errors_keep_the_full_answer_but_log_the_short_one():
    exc = GatewayError("the SMS gateway answered HTTP 503: busy 周淑英", log_text="the SMS gateway answered HTTP 503")
    assert str(exc).endswith("周淑英") and exc.log_text == "the SMS gateway answered HTTP 503"


def test_the_filter_masks_numbers_in_messages_and_tracebacks():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "lookup %s failed", (PHONE,), None)
    try:
        raise ValueError(f"no patient with id 110101199001011234 or phone {PHONE}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    PatientDataFilter().filter(record)
    assert record.getMessage() == "lookup 136****2222 failed"
    assert PHONE not in record.exc_text and "1101**********1234" in record.exc_text
    assert scrub_log_line('"GET /?q=%E5%BC%A0%E4%B8%89&tab=all HTTP/1.1" 200') == '"GET /?q=…&tab=… HTTP/1.1" 200'


def test_the_served_app_logs_request_lines_without_query_values():
    """gunicorn's access log as `hospital-workflow-serve` configures it (web/gunicorn_conf.py): a
    search for a phone number appears as ?q=…, the referrer (whose query may hold a search) is not
    logged, and the line names the web worker's pid. tests/integration/test_served.py reads the
    same lines from the real service."""
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from web import gunicorn_conf
    from web.serve import configure_logging

    cfg = Config()
    cfg.set("accesslog", gunicorn_conf.accesslog)
    cfg.set("access_log_format", gunicorn_conf.access_log_format)
    access = Logger(cfg)
    configure_logging()
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("gunicorn.access").addHandler(handler)
    try:
        environ = {"REQUEST_METHOD": "GET", "RAW_URI": f"/?q={SEARCHED}&tab=all", "SERVER_PROTOCOL": "HTTP/1.1",
                   "QUERY_STRING": f"q={SEARCHED}&tab=all", "REMOTE_ADDR": "10.1.2.3",
                   "HTTP_REFERER": "http://hospital/?q=%E5%BC%A0%E4%B8%89"}
        access.access(SimpleNamespace(status="302 FOUND", sent=0, headers=[]), SimpleNamespace(headers=[]),
                      environ, timedelta(milliseconds=12))
    finally:
        logging.getLogger("gunicorn.access").removeHandler(handler)
    [line] = lines
    assert '"GET /?q=…&tab=… HTTP/1.1" 302' in line, line
    assert SEARCHED not in line and "3912345678" not in line and "%E5%BC%A0" not in line
    assert f"<{os.getpid()}>" in line