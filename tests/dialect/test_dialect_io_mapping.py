"""camunda:inputOutput on script, user and external service tasks: text, expression, list and map
parameters; inputs are the activity's own (a process variable they hide comes back), outputs map
out."""

from __future__ import annotations

from tests.dialect.conftest import deploy, open_tasks, task_data, variables


def start(engine, **values):
    base = {"patientName": "张三", "age": 67, "extraTest": "心电图", "nurse": "nurse_li", "phone": "13800000000"}
    base.update(values)
    return engine.start("dx_io_mapping", business_key="YY-1", variables=base, user="desk")


def test_script_task_inputs_are_local_and_outputs_map_out(any_engine):
    deploy(any_engine, "io_mapping.bpmn")
    inst = start(any_engine)
    values = variables(any_engine, inst["id"])
    assert values["checkSummary"] == "张三：血常规、心电图"  # map and list inputs, used by the script
    assert values["checkFee"] == 240
    assert values["isElderly"] is True and values["ward"] == "外科"
    for local in ("patient", "tests", "fee", "elderly"):
        assert local not in values


def test_user_task_inputs_are_seen_by_the_task_and_hidden_from_the_process(engine):
    deploy(engine, "io_mapping.bpmn")
    inst = start(engine)
    (task,) = open_tasks(engine, inst["id"])
    assert task["assignee"] == "nurse_li"
    assert task["priority"] == 80  # evaluated after the inputs: ${age > 60 ? …} with the local age 68
    data = task_data(engine, task["id"])
    assert data["displayName"] == "张三（67岁）" and data["age"] == 68 and data["note"] == "请确认"
    values = variables(engine, inst["id"])
    assert values["age"] == 67  # the process variable the input hides
    assert "displayName" not in values and "note" not in values

    engine.complete(task["id"], {"note": "已电话通知"}, user="nurse_li")
    values = variables(engine, inst["id"])
    assert values["nurseNote"] == "已电话通知"  # the completion set the local variable, the output took it
    assert values["labels"] == ["张三（67岁）", "外科"]
    assert values["age"] == 67
    assert "note" not in values and "displayName" not in values


def test_external_task_inputs_reach_the_worker_and_outputs_map_out(engine):
    deploy(engine, "io_mapping.bpmn")
    inst = start(engine)
    (task,) = open_tasks(engine, inst["id"])
    engine.complete(task["id"], {}, user="nurse_li")
    (job,) = engine.external_tasks.fetch_and_lock("sms-worker", 5, [{"topicName": "sms", "lockDuration": 60000}])
    got = {name: entry["value"] for name, entry in job["variables"].items()}
    assert got["mobile"] == "13800000000"
    assert got["text"] == "张三您好，张三：血常规、心电图"
    assert "mobile" not in variables(engine, inst["id"])
    engine.external_tasks.complete(job["id"], "sms-worker", {"messageId": "SMS-42"})
    values = variables(engine, inst["id"])
    assert values["smsId"] == "SMS-42"
    assert "mobile" not in values and "text" not in values
    assert engine.get_instance(inst["id"])["status"] == "completed"
