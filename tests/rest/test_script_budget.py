"""A hostile script task cannot stop the server: the real app, served by werkzeug with threads.

The script compares two self-aliased tuples (2**32 comparisons in one C-level operation, which
held the GIL for 75 s when scripts ran in the server's process). It now runs in a worker process
that is killed at its limit: meanwhile another client's requests answer within a second, and
the start answers with an error (not 200) within the limit plus a margin, leaving no instance.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from werkzeug.serving import make_server

from engine.service import WorkflowEngine
from tests.rest.conftest import FRONTDESK, OWNER, make_app

HOSTILE = """a = ()
b = ()
for i in range(32):
    a = (a, a)
    b = (b, b)
same = a == b"""

BPMN = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Definitions_hostile"
    targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="hostile" name="比较" isExecutable="true" camunda:historyTimeToLive="180">
    <bpmn:startEvent id="StartEvent_1"><bpmn:outgoing>F1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="Compare" name="比较" scriptFormat="python">
      <bpmn:incoming>F1</bpmn:incoming><bpmn:outgoing>F2</bpmn:outgoing>
      <bpmn:script>{HOSTILE}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:endEvent id="EndEvent_1"><bpmn:incoming>F2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="StartEvent_1" targetRef="Compare" />
    <bpmn:sequenceFlow id="F2" sourceRef="Compare" targetRef="EndEvent_1" />
  </bpmn:process>
</bpmn:definitions>
"""

CPU_LIMIT = 1.0
WALL_LIMIT = 3.0
# Generous for a loaded 2-core machine: the worker's CPU is sampled every 50 ms; killing,
# reaping and the engine's error handling add a little.
MARGIN = 5.0


@pytest.fixture
def server(engine: WorkflowEngine):
    engine.settings.script_time_limit = CPU_LIMIT
    engine.settings.script_wall_time_limit = WALL_LIMIT
    engine.deploy([("hostile.bpmn", BPMN.encode())], name="hostile", user="owner")
    httpd = make_server("127.0.0.1", 0, make_app(engine), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/engine-rest"
    httpd.shutdown()
    thread.join(5)


def call(url: str, headers: dict[str, str], body: dict | None = None, timeout: float = 60.0):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_hostile_script_does_not_stop_the_server(server):
    assert call(f"{server}/version", FRONTDESK)[0] == 200
    outcome: dict = {}

    def start() -> None:
        started = time.monotonic()
        outcome["answer"] = call(f"{server}/process-definition/key/hostile/start", FRONTDESK,
                                 {"businessKey": "HOSTILE-1"})
        outcome["seconds"] = time.monotonic() - started

    starter = threading.Thread(target=start)
    starter.start()
    time.sleep(0.5)  # the comparison is running
    delays = []
    while starter.is_alive() and len(delays) < 50:
        asked = time.monotonic()
        status, body = call(f"{server}/version", FRONTDESK, timeout=5)
        delays.append(time.monotonic() - asked)
        assert status == 200 and body["version"]
        time.sleep(0.1)
    starter.join(WALL_LIMIT + MARGIN + 60)

    assert delays, "the hostile start ended before another request could be made"
    assert max(delays) < 1.0, delays
    status, body = outcome["answer"]
    assert status != 200
    assert 400 <= status < 500, body
    assert "script stopped" in body["message"], body
    assert outcome["seconds"] < WALL_LIMIT + MARGIN
    # The start failed as a whole: no instance was left behind.
    status, instances = call(f"{server}/process-instance?processDefinitionKey=hostile", OWNER)
    assert status == 200 and instances == []
