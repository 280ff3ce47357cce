"""The hospital's notification worker: SMS for the external tasks of topic ``notify``.

A diagram sends a text message with a send (or service) task::

    <bpmn:sendTask id="Activity_receiptSms" name="发送受理短信" camunda:type="external" camunda:topic="notify">
      <bpmn:extensionElements><camunda:inputOutput>
        <camunda:inputParameter name="template">complaint_receipt</camunda:inputParameter>
        <camunda:inputParameter name="phone">${complainantPhone}</camunda:inputParameter>
        <camunda:inputParameter name="caseNo">${caseNo}</camunda:inputParameter>
        <camunda:inputParameter name="feedbackDue">${feedbackDue}</camunda:inputParameter>
      </camunda:inputOutput></bpmn:extensionElements>
    </bpmn:sendTask>

The worker fetches those tasks, fills the template (Chinese by default; ``language`` = ``en`` for
English) from the task's variables, sends the text through a gateway and records every attempt
in the ``outbox`` table. The recipient is ``phone``, or ``recipientUser`` (a staff username whose
phone is on file), or ``recipientGroup`` (each active member of the group with a phone on file).
Phone numbers appear masked (138****8000) in logs and pages.

* A message that cannot be made (unknown template, a value missing, no valid mobile number)
  fails at once with no retries: an incident an administrator sees.
* A gateway failure retries with back-off (1, 5, 15 minutes by default) and then becomes an
  incident; nothing is lost silently. A message recorded as sent to a number is never sent again
  to it for the same task (a completion that failed is simply repeated), and the HTTP gateway
  sends the task id as ``Idempotency-Key`` so a provider can drop a duplicate.

The worker talks to ``engine.external_tasks`` directly (no HTTP, no credentials): in the web
process (``start_worker_thread``, started by ``hospital-workflow serve``) a new notify task wakes
it at once; as a process of its own (``run_worker``, ``hospital-workflow notify-worker``) it shares
the database and notices new tasks within the long-poll re-check interval. Gateways: ``SMS_GATEWAY``
= ``console`` (default: log and record only) or ``http`` (``SMS_HTTP_URL``, ``SMS_HTTP_TOKEN``,
``SMS_HTTP_TIMEOUT`` seconds): a POST of JSON ``{"to", "text", "reference", "template"}``; any
non-2xx answer or a timeout is a failure.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import string
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import func, select

from engine.access import LIKE_ESCAPE, contains_pattern
from engine.errors import EngineError
from engine.models import OutboxMessage, User, UserGroup
from engine.privacy import mask_phone  # 138****8000 (re-exported: pages and the outbox use it)

log = logging.getLogger(__name__)

TOPIC = "notify"
DEFAULT_RETRIES = 3
# back-off before the 1st, 2nd, 3rd … retry (ms); the last value repeats
DEFAULT_BACKOFF_MS = (60_000, 300_000, 900_000)
DEFAULT_LOCK_MS = 120_000
DEFAULT_POLL_MS = 30_000
WORKER_USER = "notify-worker"


# ------------------------------------------------------------------------------- phones ------
class MessageError(ValueError):
    """The message cannot be made from the task's variables: retrying will not help."""


def normalize_mobile(phone: Any) -> str:
    """A mobile number a text message can go to: a mainland number (11 digits, 1[3-9]…) with or
    without +86, or an international number written with '+'."""
    if phone is None or str(phone).strip() == "":
        raise MessageError("没有收信手机号 / no phone number to send to")
    text = re.sub(r"[\s\-()]", "", str(phone))
    if re.fullmatch(r"(\+86|0086|86)?1[3-9]\d{9}", text):
        return text[-11:]
    if re.fullmatch(r"\+[1-9]\d{7,14}", text):
        return text
    raise MessageError(f"{mask_phone(text)} 不是可接收短信的手机号 / is not a mobile number")


# ---------------------------------------------------------------------------- templates ------
@dataclass(frozen=True)
class Template:
    zh: str
    en: str
    required: tuple[str, ...]


# {name:date} → 2026年3月9日 / 2026-03-09; {name:datetime} → 3月2日 10:30 / 03-02 10:30;
# {name:soon} → 2026年3月9日前后 / around 2026-03-09, or 近日 / in the next few days once it has passed.
TEMPLATES: dict[str, Template] = {
    "complaint_receipt": Template(
        zh="您的投诉已受理，编号{caseNo}。我们将在{feedbackDue:date}前向您反馈处理结果。{hotline_zh}",
        en="Your complaint has been registered as {caseNo}. We will tell you the outcome by "
           "{feedbackDue:date}.{hotline_en}",
        required=("caseNo", "feedbackDue")),
    "callback_notice": Template(
        zh="{patientName}您好，客服中心将于{callbackDue:soon}致电回访您出院后的康复情况，请留意来电。"
           "{hotline_zh}",
        en="Dear {patientName}, the service center will call you {callbackDue:soon} to ask how "
           "your recovery is going after discharge.{hotline_en}",
        required=("patientName", "callbackDue")),
    "escort_assigned": Template(
        zh="陪检任务：{ward}{bedNo}床 {patientName}，请于{pickupDue:datetime}前接到患者，送至{destination}。",
        en="Escort job: {patientName}, {ward} bed {bedNo}; pick up by {pickupDue:datetime} and take to "
           "{destination}.",
        required=("patientName", "ward", "bedNo", "pickupDue", "destination")),
    "overdue_escalation": Template(
        zh="督办提醒：{caseNo}“{taskName}”已超过处理时限（{dueAt:datetime}），请尽快处理。",
        en="Overdue: {caseNo} \"{taskName}\" passed its deadline ({dueAt:datetime}); please act now.",
        required=("caseNo", "taskName", "dueAt")),
}


class _Formatter(string.Formatter):
    def __init__(self, tz, language: str, now: datetime | None = None):
        self.tz = tz
        self.language = language
        self.now = now

    def get_field(self, field_name, args, kwargs):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field_name):
            raise MessageError(f"template field '{field_name}' is not a plain name")
        return super().get_field(field_name, args, kwargs)

    def _moment(self, value) -> datetime | date:
        if isinstance(value, datetime | date):
            moment = value
        else:
            try:
                moment = datetime.fromisoformat(str(value))
            except ValueError as exc:
                raise MessageError(f"'{value}' is not a date") from exc
        if isinstance(moment, datetime):
            moment = (moment if moment.tzinfo else moment.replace(tzinfo=self.tz)).astimezone(self.tz)
        return moment

    def format_field(self, value, format_spec):
        if format_spec == "soon":
            moment = self._moment(value)
            day = moment.date() if isinstance(moment, datetime) else moment
            if self.now is not None and day < self.now.astimezone(self.tz).date():
                return "in the next few days" if self.language == "en" else "近日"
            if self.language == "en":
                return "around " + self.format_field(moment, "date")
            return self.format_field(moment, "date") + "前后"
        if format_spec == "date":
            moment = self._moment(value)
            if self.language == "en":
                return f"{moment:%Y-%m-%d}"
            return f"{moment.year}年{moment.month}月{moment.day}日"
        if format_spec == "datetime":
            moment = self._moment(value)
            if not isinstance(moment, datetime):
                return self.format_field(moment, "date")
            if self.language == "en":
                return f"{moment:%m-%d %H:%M}"
            return f"{moment.month}月{moment.day}日 {moment:%H:%M}"
        return super().format_field(value, format_spec)


def render(template_name: Any, values: Mapping[str, Any], tz, *, language: str = "zh",
           hotline: str | None = None, now: datetime | None = None) -> str:
    """The text of template `template_name` filled from `values` (raises MessageError)."""
    template = TEMPLATES.get(str(template_name or ""))
    if template is None:
        raise MessageError(f"未知的短信模板 '{template_name}' / unknown template (known: {', '.join(TEMPLATES)})")
    missing = [n for n in template.required if values.get(n) in (None, "")]
    if missing:
        raise MessageError(f"短信模板 {template_name} 缺少变量 / template needs: {', '.join(missing)}")
    hotline = values.get("hotline") or hotline
    fields = {k: v for k, v in values.items() if isinstance(k, str)}
    fields["hotline_zh"] = f"如有疑问请致电{hotline}。" if hotline else ""
    fields["hotline_en"] = f" Questions: call {hotline}." if hotline else ""
    english = str(language or "zh").lower().startswith("en")
    text = template.en if english else template.zh
    try:
        return _Formatter(tz, "en" if english else "zh", now).vformat(text, (), fields)
    except (KeyError, IndexError, AttributeError) as exc:
        raise MessageError(f"短信模板 {template_name} 无法填充 / cannot fill: {exc}") from exc


# ----------------------------------------------------------------------------- gateways ------
class GatewayError(Exception):
    """The gateway did not take the message (worth retrying). `log_text` is what logs and incident
    messages may show (no provider answer that could echo the message)."""

    def __init__(self, message: str, *, log_text: str | None = None):
        super().__init__(message)
        self.log_text = log_text or message


def _log_text(exc: Exception) -> str:
    return getattr(exc, "log_text", None) or str(exc)


class SmsGateway(Protocol):
    name: str

    def send(self, phone: str, text: str, *, reference: str, template: str | None = None) -> str:
        """Send one text; return the provider's answer (a message id); raise GatewayError."""


class ConsoleGateway:
    """Development and test default: logs the message (number masked); the outbox is the record."""

    name = "console"

    def send(self, phone: str, text: str, *, reference: str, template: str | None = None) -> str:
        # the text carries the patient's name, ward and bed: the log gets the template and reference
        log.info("SMS to %s recorded (template %s, reference %s, %d characters)", mask_phone(phone),
                 template or "-", reference, len(text))
        return "recorded"


class HttpGateway:
    """A real SMS provider behind an HTTP endpoint: POST JSON, bearer token, time limit."""

    name = "http"

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10.0,
                 sender: str | None = None):
        if not url or not url.startswith(("http://", "https://")):
            raise ValueError("SMS_HTTP_URL must be an http(s) URL")
        self.url, self.token, self.timeout, self.sender = url, token, timeout, sender

    def send(self, phone: str, text: str, *, reference: str, template: str | None = None) -> str:
        import requests

        headers = {"Content-Type": "application/json", "Idempotency-Key": reference}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body = {"to": phone, "text": text, "reference": reference, "template": template}
        if self.sender:
            body["sender"] = self.sender
        try:
            response = requests.post(self.url, json=body, headers=headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise GatewayError(f"the SMS gateway did not answer within {self.timeout:g} s") from exc
        except requests.RequestException as exc:
            raise GatewayError(f"the SMS gateway cannot be reached: {type(exc).__name__}") from exc
        if not 200 <= response.status_code < 300:
            # the provider's answer may echo the message: kept for the outbox, not for logs and incidents
            raise GatewayError(f"the SMS gateway answered HTTP {response.status_code}: {response.text[:200]}",
                               log_text=f"the SMS gateway answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, Mapping):
            found = answer.get("id") or answer.get("messageId") or answer.get("message_id")
            if found:
                return str(found)[:200]
        return f"HTTP {response.status_code}"


def gateway_from_env(environ: Mapping[str, str] | None = None) -> SmsGateway:
    env = os.environ if environ is None else environ
    kind = (env.get("SMS_GATEWAY") or "console").strip().lower()
    if kind in ("console", "outbox", ""):
        return ConsoleGateway()
    if kind == "http":
        return HttpGateway(env.get("SMS_HTTP_URL", ""), env.get("SMS_HTTP_TOKEN") or None,
                           timeout=float(env.get("SMS_HTTP_TIMEOUT") or 10), sender=env.get("SMS_HTTP_SENDER"))
    raise ValueError(f"SMS_GATEWAY '{kind}' is not known (console or http)")


# ------------------------------------------------------------------------------- worker ------
class NotifyWorker:
    """Fetches `notify` tasks, sends them, records them; `start()` runs it in a daemon thread."""

    def __init__(self, engine, gateway: SmsGateway | None = None, *, worker_id: str | None = None,
                 max_tasks: int = 10, lock_duration_ms: int = DEFAULT_LOCK_MS, poll_ms: int = DEFAULT_POLL_MS,
                 retries: int = DEFAULT_RETRIES, backoff_ms: tuple[int, ...] = DEFAULT_BACKOFF_MS,
                 hotline: str | None = None):
        self.engine = engine
        self.gateway = gateway or gateway_from_env()
        self.worker_id = worker_id or f"notify-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.max_tasks, self.lock_duration_ms, self.poll_ms = max_tasks, lock_duration_ms, poll_ms
        self.retries, self.backoff_ms = retries, tuple(backoff_ms) or DEFAULT_BACKOFF_MS
        self.hotline = hotline if hotline is not None else os.environ.get("SERVICE_HOTLINE")
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def service(self):
        return self.engine.external_tasks

    # -- running ------------------------------------------------------------------------------
    def run_once(self, wait_ms: int = 0) -> int:
        """Fetch what is there (waiting up to `wait_ms` for something) and handle it."""
        tasks = self.service.fetch_and_lock(
            self.worker_id, self.max_tasks, [{"topicName": TOPIC, "lockDuration": self.lock_duration_ms}],
            use_priority=True, async_response_timeout=wait_ms, stop=self.stop_event)
        for task in tasks:
            if self.stop_event.is_set():
                break
            self.handle(task)
        return len(tasks)

    def run(self) -> None:
        log.info("notify worker %s: gateway %s, topic %s", self.worker_id, self.gateway.name, TOPIC)
        failures = 0
        while not self.stop_event.is_set():
            try:
                self.run_once(self.poll_ms)
                failures = 0
            except Exception:  # the worker must outlive a database hiccup (logged, then a pause)
                failures += 1
                log.exception("notify worker %s: fetching failed", self.worker_id)
                self.stop_event.wait(min(60.0, 2.0 ** min(failures, 6)))

    def start(self) -> NotifyWorker:
        self.thread = threading.Thread(target=self.run, name=f"notify-worker-{self.worker_id}", daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        self.stop_event.set()
        self.service._wake()
        if self.thread is not None:
            self.thread.join(timeout)

    def is_alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    # -- one task -----------------------------------------------------------------------------
    def handle(self, task: dict) -> str:
        """Send one fetched task: 'sent', 'duplicate' (sent before), 'retry' or 'incident'."""
        values = {name: v.get("value") for name, v in (task.get("variables") or {}).items()}
        template = values.get("template")
        try:
            phones = self._recipients(values)
            text = render(template, values, self.engine.settings.tz, language=values.get("language") or "zh",
                          hotline=self.hotline, now=self.engine.clock.now())
        except MessageError as exc:
            log.warning("notify task %s (%s, instance %s): %s", task["id"], template, task["instance_id"], exc)
            self._fail(task, f"短信无法生成 / message cannot be made: {exc}", str(exc), retries=0, timeout=0)
            return "incident"
        done = self._sent_to(task["id"])
        todo = [p for p in phones if p not in done]
        if not todo:
            self._complete(task, "sent", None, text)
            return "duplicate"
        attempt = self._attempts(task["id"]) + 1
        results, failures = [], []
        for phone in todo:
            try:
                results.append(self.gateway.send(phone, text, reference=self._reference(task["id"], phone, phones),
                                                 template=str(template)))
            except GatewayError as exc:
                self._record(task, phone, text, str(template), "failed", str(exc), attempt)
                failures.append((phone, exc))
                continue
            self._record(task, phone, text, str(template), "sent", results[-1], attempt)
            log.info("SMS to %s sent (task %s, template %s, gateway %s)", mask_phone(phone), task["id"], template,
                     self.gateway.name)
        if failures:
            left = max(0, (task["retries"] - 1) if task.get("retries") is not None else self.retries)
            timeout = self.backoff_ms[min(attempt - 1, len(self.backoff_ms) - 1)]
            error = "; ".join(f"{mask_phone(p)}: {exc}" for p, exc in failures)
            short = "; ".join(f"{mask_phone(p)}: {_log_text(exc)}" for p, exc in failures)
            log.warning("SMS of task %s (attempt %d) failed: %s; %s", task["id"], attempt, short,
                        f"{left} retries left" if left else "no retries left: incident")
            self._fail(task, f"短信发送失败 / SMS not sent: {_log_text(failures[0][1])}",
                       f"attempt {attempt} via {self.gateway.name}: {error}", retries=left, timeout=timeout)
            return "retry" if left else "incident"
        self._complete(task, "sent", ", ".join(results), text)
        return "sent"

    @staticmethod
    def _reference(task_id: str, phone: str, phones: list[str]) -> str:
        return task_id if len(phones) == 1 else f"{task_id}:{phones.index(phone)}"

    def _recipients(self, values: Mapping[str, Any]) -> list[str]:
        """`phone`, or `recipientUser` (a staff username), or `recipientGroup` (every active member of
        a group with a phone on file, e.g. the director on duty)."""
        if values.get("phone"):
            return [normalize_mobile(values["phone"])]
        if values.get("recipientUser"):
            return [normalize_mobile(self._staff_phone(values["recipientUser"]))]
        group = values.get("recipientGroup")
        if group:
            with self.engine.db.reader() as s:
                phones = s.execute(select(User.phone).join(UserGroup, UserGroup.user_id == User.id).where(
                    UserGroup.group_id == str(group), User.active.is_(True), User.phone.is_not(None))
                    .order_by(User.username)).scalars().all()
            found = list(dict.fromkeys(normalize_mobile(p) for p in phones if p))
            if not found:
                raise MessageError(f"组 {group} 没有登记手机号的成员 / no member of group {group} has a phone")
            return found
        return [normalize_mobile(None)]

    def _staff_phone(self, username: Any) -> str:
        with self.engine.db.reader() as s:
            phone = s.execute(select(User.phone).where(User.username == str(username),
                                                       User.active.is_(True))).scalar_one_or_none()
        if not phone:
            raise MessageError(f"用户 {username} 没有登记手机号 / user {username} has no phone on file")
        return phone

    def _fail(self, task: dict, message: str, details: str, *, retries: int, timeout: int) -> None:
        try:
            self.service.handle_failure(task["id"], self.worker_id, message, details, retries, timeout,
                                        user=WORKER_USER)
        except EngineError as exc:  # the lock expired or the task went away meanwhile
            log.warning("notify task %s: the failure could not be reported: %s", task["id"], exc)

    def _complete(self, task: dict, status: str, result: str | None, text: str) -> None:
        try:
            self.service.complete(task["id"], self.worker_id, local_variables={
                "notifyStatus": status, "notifyResult": result, "notifyText": text}, user=WORKER_USER)
        except EngineError as exc:
            # sent and recorded: a later fetch finds the outbox row and only completes the task
            log.warning("notify task %s: sent, but the completion failed: %s", task["id"], exc)

    # -- the outbox ---------------------------------------------------------------------------
    def _sent_to(self, task_id: str) -> set[str]:
        with self.engine.db.reader() as s:
            return set(s.execute(select(OutboxMessage.recipient).where(
                OutboxMessage.external_task_id == task_id, OutboxMessage.status == "sent")).scalars())

    def _attempts(self, task_id: str) -> int:
        with self.engine.db.reader() as s:
            return s.execute(select(func.count(OutboxMessage.id)).where(
                OutboxMessage.external_task_id == task_id)).scalar_one()

    def _record(self, task: dict, phone: str, text: str, template: str, status: str, result: str | None,
                attempt: int) -> None:
        now = self.engine.clock.now()
        with self.engine.db.transaction() as s:
            s.add(OutboxMessage(created_at=now, sent_at=now if status == "sent" else None, channel="sms",
                                gateway=self.gateway.name, recipient=phone, recipient_masked=mask_phone(phone),
                                template=template, text=text, status=status, result=(result or "")[:2000] or None,
                                attempt=attempt, external_task_id=task["id"], instance_id=task["instance_id"],
                                business_key=task.get("business_key"), process_key=task.get("process_key"),
                                activity_id=task.get("activity_id")))


def list_outbox(engine, *, status: str | None = None, template: str | None = None, search: str | None = None,
                offset: int = 0, limit: int = 50) -> tuple[list[dict], int]:
    """The outbox for the admin page, newest first; numbers only masked."""
    def where(q):
        if status:
            q = q.where(OutboxMessage.status == status)
        if template:
            q = q.where(OutboxMessage.template == template)
        if search:
            like = contains_pattern(search.strip())
            q = q.where((OutboxMessage.business_key.like(like, escape=LIKE_ESCAPE))
                        | (OutboxMessage.text.like(like, escape=LIKE_ESCAPE))
                        | (OutboxMessage.instance_id == search.strip()))
        return q

    with engine.db.reader() as s:
        total = s.execute(where(select(func.count(OutboxMessage.id)))).scalar_one()
        rows = s.execute(where(select(OutboxMessage)).order_by(OutboxMessage.created_at.desc(),
                                                               OutboxMessage.id.desc())
                         .offset(max(0, offset)).limit(max(0, min(limit, 500)))).scalars().all()
        return [{"id": r.id, "created_at": r.created_at, "sent_at": r.sent_at, "channel": r.channel,
                 "gateway": r.gateway, "recipient_masked": r.recipient_masked, "template": r.template,
                 "text": r.text, "status": r.status, "result": r.result, "attempt": r.attempt,
                 "external_task_id": r.external_task_id, "instance_id": r.instance_id,
                 "business_key": r.business_key, "process_key": r.process_key, "activity_id": r.activity_id}
                for r in rows], total


# ------------------------------------------------------------------------- entry points ------
def start_worker_thread(engine, gateway: SmsGateway | None = None, **options) -> NotifyWorker:
    """The worker in a daemon thread of this process (what `hospital-workflow serve` starts)."""
    return NotifyWorker(engine, gateway, **options).start()


def run_worker(engine, gateway: SmsGateway | None = None, *, stop: threading.Event | None = None,
               **options) -> int:
    """Run the worker in the foreground until SIGTERM / Ctrl+C (or `stop`): production's
    `hospital-workflow notify-worker`, beside the web processes, on the same database."""
    worker = NotifyWorker(engine, gateway, **options)
    if stop is not None:
        worker.stop_event = stop
    if threading.current_thread() is threading.main_thread():
        def _stop(*_args):
            worker.stop_event.set()
            engine.external_tasks._wake()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    print(f"notify worker {worker.worker_id} on {engine.db.url} (gateway {worker.gateway.name}; Ctrl+C stops)")
    worker.run()
    return 0
