"""A living demo for a new installation (`hospital-workflow setup --demo`).

Called once, after the workflows are deployed and the demo staff exist, on an empty database: starts
instances of the four processes in several states (new, claimed, overdue, waiting, closed) with
realistic data, so that a new user sees a real task list at once. The clock is never moved: the
overdue complaint is registered with a receipt time two days ago, and the callbacks that are due were
discharged long enough ago; the timers that are already due are fired like the scheduler would.

The text messages the demo instances queue (topic `notify`: complaint receipts, escort assignments,
callback notices) are then handled at once through the console gateway: logged and recorded in the
outbox as sent, never handed to an SMS provider (the demo's phone numbers are made up, and a worker
started later with SMS_GATEWAY=http finds nothing of the demo to send). So the closed demo instances
are completed, and the outbox page shows what would have gone out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from engine.errors import EngineError
from engine.notify import ConsoleGateway, NotifyWorker

log = logging.getLogger(__name__)


class _Demo:
    def __init__(self, engine):
        self.engine = engine
        self.now: datetime = engine.clock.now().astimezone(engine.settings.tz)

    def iso(self, **delta) -> str:
        return (self.now + timedelta(**delta)).isoformat(timespec="minutes")

    def day(self, **delta) -> str:
        return (self.now + timedelta(**delta)).date().isoformat()

    def key(self, prefix: str, n: int) -> str:
        return f"{prefix}-{self.now:%Y%m%d}-{n:03d}"

    def start(self, process_key: str, business_key: str, user: str, variables: dict) -> str:
        return self.engine.start(process_key, business_key=business_key, user=user,
                                 variables={"businessKey": business_key, **variables})["id"]

    def task(self, instance_id: str, element_id: str) -> dict:
        for t in self.engine.list_tasks(instance_id=instance_id, limit=100):
            if t["element_id"] == element_id:
                return t
        raise EngineError(f"demo: instance {instance_id} has no open task '{element_id}'")

    def do(self, instance_id: str, element_id: str, values: dict, user: str) -> None:
        task = self.task(instance_id, element_id)
        if task["assignee"] is None:
            self.engine.claim(task["id"], user)
        self.engine.complete(task["id"], values, user=user)

    def claim(self, instance_id: str, element_id: str, user: str) -> None:
        self.engine.claim(self.task(instance_id, element_id)["id"], user)


# ------------------------------------------------------------------------------- complaints

def _complaints(d: _Demo) -> None:
    # new, normal tier: waiting for the complaint office's first response
    d.start("complaint", d.key("TS", 1), "complaints", {
        "complainantName": "刘建华", "complainantPhone": "13901234567", "relation": "本人", "patientName": "刘建华",
        "patientNo": "ZY20260112", "department": "收费处", "category": "收费争议",
        "description": "出院结算单上多计了两天床位费，窗口说要找病区核对，来回跑了三趟",
        "demand": "退还多收的费用", "channel": "电话", "multiDepartment": False, "safetyRisk": False,
        "medicalDispute": False, "patientCondition": "平稳", "receivedAt": d.iso(minutes=-20)})
    # urgent: patient safety; medical affairs acts at once, the first response is claimed
    urgent = d.start("complaint", d.key("TS", 2), "frontdesk", {
        "complainantName": "王秀兰", "complainantPhone": "13812345678", "relation": "家属", "patientName": "李建国",
        "patientNo": "ZY20260301", "department": "外科", "category": "诊疗效果",
        "description": "父亲胆囊切除术后第二天伤口渗血，夜里按铃半小时无医生查看", "demand": "立即处理并说明原因",
        "channel": "病区", "multiDepartment": False, "safetyRisk": True, "medicalDispute": False,
        "patientCondition": "病情变化", "receivedAt": d.iso(minutes=-10)})
    d.claim(urgent, "Activity_review", "complaints")
    # overdue: received two days ago and nobody responded; the warning goes to the director
    d.start("complaint", d.key("TS", 3), "complaints", {
        "complainantName": "张伟", "complainantPhone": "13588886666", "relation": "本人", "patientName": "张伟",
        "patientNo": "MZ20260210", "department": "内科", "category": "服务态度",
        "description": "门诊护士分诊时语气生硬，询问两次都不耐烦", "demand": "希望护士道歉",
        "channel": "网上", "multiDepartment": False, "safetyRisk": False, "medicalDispute": False,
        "patientCondition": "平稳", "receivedAt": d.iso(days=-2)})
    # a suggestion under investigation by logistics
    suggestion = d.start("complaint", d.key("TS", 4), "frontdesk", {
        "complainantName": "陈静", "complainantPhone": "13700001234", "relation": "本人", "patientName": "陈静",
        "department": "门诊部", "category": "环境设施", "description": "门诊二楼候诊区座椅不够，老人只能站着等",
        "demand": "增加座椅", "channel": "前台", "multiDepartment": False, "safetyRisk": False,
        "medicalDispute": False, "patientCondition": "平稳", "receivedAt": d.iso(hours=-3)})
    d.do(suggestion, "Activity_review", {"acceptDecision": "受理", "firstResponseNote": "已告知将转后勤保障部处理"},
         "complaints")
    # closed: investigated, resolved and the complainant satisfied
    closed = d.start("complaint", d.key("TS", 5), "complaints", {
        "complainantName": "赵敏", "complainantPhone": "13611112222", "relation": "家属", "patientName": "赵小宝",
        "patientNo": "MZ20260222", "department": "儿科", "category": "候诊时间",
        "description": "儿科夜间急诊候诊两个多小时，孩子高烧", "demand": "改进夜间排班",
        "channel": "电话", "multiDepartment": False, "safetyRisk": False, "medicalDispute": False,
        "patientCondition": "平稳", "receivedAt": d.iso(minutes=-40)})
    d.do(closed, "Activity_review", {"acceptDecision": "受理", "firstResponseNote": "已致电家属致歉并说明将调查"},
         "complaints")
    d.do(closed, "Activity_investigate", {
        "facts": "当晚儿科急诊仅一名医生在岗，同时抢救一名惊厥患儿", "complaintFounded": "部分属实",
        "responsibleUnit": "儿科", "responsiblePerson": "儿科主任", "proposedMeasures": "流感季夜班增加一名医生"},
         "head")
    d.do(closed, "Activity_resolve", {
        "measuresTaken": "自下周起夜班增加一名医生", "feedbackContent": "已电话告知家属调查结果和改进措施",
        "feedbackChannel": "电话", "feedbackGiven": True}, "complaints")
    d.do(closed, "Activity_followUp", {
        "problemSolved": True, "complainantSatisfied": True, "satisfactionScore": 4,
        "improvementProblem": "流感季儿科夜间候诊时间长", "improvementUnit": "儿科",
        "improvementMeasure": "夜班弹性增配医生", "improvementDeadline": d.day(days=14)}, "complaints")
    # not handled: already before a court; the complainant must be told where to turn
    court = d.start("complaint", d.key("TS", 6), "complaints", {
        "complainantName": "孙立", "complainantPhone": "13322223333", "relation": "家属", "patientName": "孙国强",
        "department": "外科", "category": "诊疗效果",
        "description": "对去年的手术效果不满意，要求赔偿", "demand": "赔偿", "channel": "电话",
        "multiDepartment": False, "safetyRisk": False, "medicalDispute": True, "patientCondition": "平稳",
        "receivedAt": d.iso(minutes=-5)})
    d.do(court, "Activity_review", {"acceptDecision": "不予处理", "notHandledReason": "已向人民法院起诉",
                                    "firstResponseNote": "家属已向区人民法院起诉"}, "complaints")


# ------------------------------------------------------------------------------- first contact

def _first_contact(d: _Demo) -> None:
    d.start("first_contact", d.key("SW", 1), "frontdesk", {
        "requestType": "咨询", "patientName": "黄丽", "contactPhone": "13455556666", "location": "住院部前台",
        "description": "出院后住院押金怎么退，需要带哪些材料", "handoverMinutes": 30})
    handed = d.start("first_contact", d.key("SW", 2), "frontdesk", {
        "requestType": "报告查询", "patientName": "周强", "patientNo": "MZ20260303", "contactPhone": "13266667777",
        "location": "门诊大厅前台", "description": "三天前做的增强CT报告还查不到", "handoverMinutes": 30})
    d.do(handed, "Activity_answer", {"handling": "移交他人或部门", "handoverGroup": "dept_head",
                                     "handoverNote": "请影像科核实报告审核进度"}, "frontdesk")
    on_spot = d.start("first_contact", d.key("SW", 3), "frontdesk", {
        "requestType": "便民服务", "patientName": "吴桂英", "location": "门诊大厅前台",
        "description": "需要借用轮椅到三楼做B超", "handoverMinutes": 30})
    d.do(on_spot, "Activity_answer", {"handling": "当场答复办结", "answer": "已借出轮椅并指引到超声科"}, "frontdesk")


# ------------------------------------------------------------------------------- escorts

def _escorts(d: _Demo) -> None:
    d.start("escort_request", d.key("PJ", 1), "nurse", {
        "patientName": "马春生", "patientNo": "ZY20260305", "ward": "急诊留观区", "bedNo": "3",
        "destination": "影像科", "destinationRoom": "CT1室", "mobility": "担架", "oxygen": True, "drips": True,
        "isolation": False, "urgency": "紧急", "wardPhone": "6120", "requestNote": "疑似脑出血，需氧气袋全程陪同"})
    assigned = d.start("escort_request", d.key("PJ", 2), "nurse", {
        "patientName": "孙桂芳", "patientNo": "ZY20260288", "ward": "心内科一病区", "bedNo": "12",
        "destination": "超声科", "mobility": "轮椅", "oxygen": False, "drips": False, "isolation": False,
        "urgency": "普通", "timeNeeded": d.iso(hours=1), "wardPhone": "6021"})
    d.do(assigned, "Activity_assign", {"escortUser": "escort", "escortName": "孙伟"}, "dispatcher")
    done = d.start("escort_request", d.key("PJ", 3), "nurse", {
        "patientName": "郑大爷", "patientNo": "ZY20260270", "ward": "外科二病区",
        "bedNo": "28", "destination": "手术室", "mobility": "平车", "oxygen": False, "drips": True,
        "isolation": False, "urgency": "普通", "wardPhone": "6233"})
    d.do(done, "Activity_assign", {"escortUser": "escort", "escortName": "孙伟"}, "dispatcher")
    d.do(done, "Activity_pickup", {"identityChecked": True, "tubesChecked": True}, "escort")
    d.do(done, "Activity_transport", {"delivered": True, "incident": False, "needReturn": False,
                                      "handoverNote": "已与手术室巡回护士交接"}, "escort")


# ------------------------------------------------------------------------------- callbacks

def _callbacks(d: _Demo) -> None:
    base = {"phone": "13000000000", "highRisk": False, "elderly": False}
    # waiting for the callback day
    d.start("discharge_callback", d.key("HF", 1), "nurse", {
        **base, "patientName": "林秀珍", "patientNo": "ZY20260220", "phone": "13011112222", "department": "内科",
        "ward": "内科二病区", "diagnosisGroup": "一般", "dischargeDate": d.day(days=-1), "attendingDoctor": "吴医生"})
    # due: a chronic patient discharged three weeks ago (plan: 14 days), claimed by the caller
    due = d.start("discharge_callback", d.key("HF", 2), "nurse", {
        **base, "patientName": "高志明", "patientNo": "ZY20260150", "phone": "13122223333", "department": "内科",
        "ward": "内分泌病区", "diagnosisGroup": "慢病", "dischargeDate": d.day(days=-21), "elderly": True,
        "attendingDoctor": "钱医生"})
    # dissatisfied: the call raises a complaint linked to the callback
    unhappy = d.start("discharge_callback", d.key("HF", 3), "nurse", {
        **base, "patientName": "何雪梅", "patientNo": "ZY20260166", "phone": "13233334444", "department": "妇产科",
        "diagnosisGroup": "一般", "dischargeDate": d.day(days=-12), "attendingDoctor": "冯医生"})
    # a clinical concern for the ward nurse
    concern = d.start("discharge_callback", d.key("HF", 4), "nurse", {
        **base, "patientName": "罗建平", "patientNo": "ZY20260170", "phone": "13344445555", "department": "外科",
        "diagnosisGroup": "术后", "dischargeDate": d.day(days=-10), "attendingDoctor": "郑医生"})
    d.engine.fire_due_timers()
    d.claim(due, "Activity_call", "caller")
    d.do(unhappy, "Activity_call", {
        "reached": True, "recovery": "良好", "satisfied": False, "satisfactionScore": 2, "clinicalConcern": False,
        "complaintCategory": "医患沟通", "complaintDescription": "住院期间多次询问检查结果，医生没有解释清楚",
        "callNote": "患者情绪较大，要求投诉"}, "nurse")
    d.do(concern, "Activity_call", {
        "reached": True, "recovery": "一般", "satisfied": True, "satisfactionScore": 4, "clinicalConcern": True,
        "concernDescription": "切口周围红肿，偶有低热", "callNote": "建议尽快复诊"}, "nurse")


def _send_demo_sms(engine) -> int:
    """Every SMS the demo queued, through the console gateway only (see the module docstring)."""
    worker = NotifyWorker(engine, ConsoleGateway(), worker_id="demo-seed")
    handled = 0
    for _ in range(100):  # each round takes up to max_tasks; a failed message is not fetched again
        done = worker.run_once()
        if not done:
            break
        handled += done
    return handled


SCENARIOS: list[tuple[str, Callable[[_Demo], None]]] = [
    ("complaint", _complaints),
    ("first_contact", _first_contact),
    ("escort_request", _escorts),
    ("discharge_callback", _callbacks),
]


def seed_demo_instances(engine) -> int:
    """Start the demo instances; returns how many instances were started (children included).

    Does nothing on a database that already has instances; skips a process that is not deployed and
    logs (does not raise) when a scenario fails, so that setup always finishes."""
    before = engine.count_instances()
    if before:
        log.info("demo: the database already has %d instances; nothing seeded", before)
        return 0
    deployed = {d["key"] for d in engine.list_definitions(latest_only=True)}
    demo = _Demo(engine)
    for process_key, scenario in SCENARIOS:
        if process_key not in deployed:
            log.warning("demo: process '%s' is not deployed; its demo instances are skipped", process_key)
            continue
        try:
            scenario(demo)
        except EngineError as exc:
            log.warning("demo: the %s scenario stopped: %s", process_key, exc)
    try:
        engine.fire_due_timers()  # what the scheduler does at once: the overdue complaint's warning
    except EngineError as exc:
        log.warning("demo: firing due timers failed: %s", exc)
    try:
        log.info("demo: %d text messages recorded in the outbox (console gateway)", _send_demo_sms(engine))
    except EngineError as exc:
        log.warning("demo: sending the demo's text messages failed: %s", exc)
    return engine.count_instances() - before
