"""Helpers of the retention tests: complaint cases with a patient's data in every table, and a scan
of every column of every table of the live database for a text."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import sqlalchemy as sa

from engine.service import TaskQuery
from tests.processes.support import complete, send_sms

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

PHONE = "13812345678"
COMPLAINANT = "王秀兰"
PATIENT = "李建国"
RECORD = "ZY20260301"
DESCRIPTION = "夜班护士态度生硬，呼叫铃长时间无人应答"
REGISTRATION = {
    "complainantName": COMPLAINANT, "complainantPhone": PHONE, "relation": "家属",
    "patientName": PATIENT, "patientNo": RECORD, "department": "内科", "category": "服务态度",
    "description": DESCRIPTION, "demand": "希望科室道歉并改进",
    "channel": "电话", "multiDepartment": False, "safetyRisk": False, "medicalDispute": False,
    "patientCondition": "平稳",
}
INVESTIGATION = {"facts": "核实呼叫铃记录，夜班应答延迟约12分钟", "complaintFounded": "属实",
                 "responsibleUnit": "内科护理单元", "responsiblePerson": "当班护士",
                 "proposedMeasures": "约谈当班护士，调整夜班人力"}
RESOLUTION = {"measuresTaken": f"科室向{COMPLAINANT}道歉，夜班增加一名护士", "feedbackContent": "已电话告知处理结果",
              "feedbackChannel": "电话", "feedbackGiven": True}
# what a patient's data looks like anywhere in the database
NEEDLES = (PHONE, COMPLAINANT, PATIENT, RECORD, DESCRIPTION, "希望科室道歉并改进", "核实呼叫铃记录")


def register(engine, key="TS-2026-0001", **changes) -> str:
    return engine.start("complaint", business_key=key, user="complaints",
                        variables={**REGISTRATION, **changes})["id"]


def closed_complaint(engine, key="TS-2026-0001", **changes) -> str:
    """A complaint taken through every step: accepted, receipt SMS sent, investigated, resolved,
    followed up with a satisfaction score, closed."""
    iid = register(engine, key, **changes)
    complete(engine, iid, "Activity_review", {"acceptDecision": "受理", "firstResponseNote": f"已致电{COMPLAINANT}"},
             user="complaints")
    send_sms(engine)
    complete(engine, iid, "Activity_investigate", INVESTIGATION, user="head")
    complete(engine, iid, "Activity_resolve", RESOLUTION, user="complaints")
    complete(engine, iid, "Activity_followUp", {
        "problemSolved": True, "complainantSatisfied": True, "satisfactionScore": 5,
        "followUpNote": f"{PATIENT}家属表示满意", "improvementProblem": "夜班呼叫铃应答慢",
        "improvementUnit": "护理部", "improvementMeasure": "夜班弹性排班", "improvementDeadline": "2026-04-01"},
        user="complaints")
    assert engine.get_instance(iid)["status"] == "completed"
    return iid


def task_ids(engine, instance_id: str) -> list[str]:
    return [t["id"] for t in engine.list_tasks(TaskQuery(instance_id=instance_id, status="", limit=1000))]


def _haystack(value) -> str:
    if value is None:
        return ""
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, bytes):
        try:
            value = zlib.decompress(value)
        except zlib.error:
            pass
        value = value.decode("utf-8", "ignore")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    if text[:1] in "{[\"":
        try:  # JSON columns keep non-ASCII text as \\u escapes
            return text + json.dumps(json.loads(text), ensure_ascii=False)
        except ValueError:
            pass
    return text


def tables_with_column(engine, predicate) -> list[tuple[str, str]]:
    inspector = sa.inspect(engine.db.engine)
    return [(table, c["name"]) for table in inspector.get_table_names()
            for c in inspector.get_columns(table) if predicate(c["name"])]


def find_anywhere(engine, needles, *, skip: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every column of every table (the live schema, not the models)
    whose value contains one of the needles, compressed blobs and JSON included."""
    inspector = sa.inspect(engine.db.engine)
    found = set()
    with engine.db.engine.connect() as conn:
        for table in inspector.get_table_names():
            columns = [c["name"] for c in inspector.get_columns(table)]
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')).mappings():
                for column in columns:
                    if (table, column) in skip:
                        continue
                    hay = _haystack(row[column])
                    for needle in needles:
                        if needle in hay:
                            found.add((table, column, needle))
    return sorted(found)


def fixture(*parts: str) -> bytes:
    return FIXTURES.joinpath(*parts).read_bytes()


def inquiry_with(properties: dict[str, str]) -> bytes:
    """The inquiry test process with process-level camunda:properties (as Camunda Modeler writes them)."""
    source = fixture("bpmn", "inquiry.bpmn").decode()
    head = '<bpmn:process id="inquiry" name="咨询处理" isExecutable="true" camunda:historyTimeToLive="180">'
    assert head in source
    props = "".join(f'<camunda:property name="{k}" value="{v}" />' for k, v in properties.items())
    return source.replace(head, head + f"<bpmn:extensionElements><camunda:properties>{props}"
                                       "</camunda:properties></bpmn:extensionElements>").encode()


def start_inquiry(engine, business_key="ZX-001", **extra) -> str:
    variables = {"dueAt": "2026-03-02T11:00:00+08:00", "urgent": False, "patientName": "张三",
                 "patientNo": "MZ0001", "question": "张三询问复诊时间", **extra}
    return engine.start("inquiry", business_key=business_key, variables=variables, user="frontdesk")["id"]


def answer_inquiry(engine, instance_id: str) -> None:
    [task] = engine.list_tasks(TaskQuery(instance_id=instance_id))
    engine.complete(task["id"], {"answerText": "已告知张三复诊安排", "solved": True, "minutesSpent": 5},
                    user="frontdesk")
