"""Camunda's own external-task clients, unchanged, against the real service on a free port:
camunda-external-task-client-js 3.1.0 (npm, installed into a temp dir by the test) and
camunda-external-task-client-python3 4.5.0 (PyPI, in the venv's test extras with pydantic, which
it imports without declaring it; installed by the test when missing). Each skips, saying why, only when its registry cannot be reached."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import time

import pytest

from tests.external.conftest import WORKER, start_simple

JS_CLIENT = "camunda-external-task-client-js@3.1.0"
# 4.5.0 imports pydantic but does not declare it
PY_CLIENT = ("camunda-external-task-client-python3==4.5.0", "pydantic>=2")

JS_WORKER = r"""
import { Client, Variables, BasicAuthInterceptor } from "camunda-external-task-client-js";

const [baseUrl, username, password, expected] = process.argv.slice(2);
const client = new Client({
  baseUrl, workerId: "js-worker", maxTasks: 5, lockDuration: 20000, asyncResponseTimeout: 2000,
  autoPoll: false, interceptors: new BasicAuthInterceptor({ username, password }),
});
let done = 0;
client.on("poll:error", (e) => console.error("poll error", e.message));
client.on("complete:error", (_task, e) => console.error("complete error", e.message));
client.subscribe("js-topic", async ({ task, taskService }) => {
  const result = new Variables();
  result.set("handledBy", "js");
  result.set("greetingSeen", task.variables.get("greeting"));
  result.set("answer", 42);
  await taskService.complete(task, result);
  done += 1;
  if (done >= Number(expected)) {
    client.stop();
    console.log(JSON.stringify({ done }));
    process.exit(0);
  }
});
client.start();
setTimeout(() => { console.error(`timed out after ${done} task(s)`); process.exit(3); }, 60000);
"""


def _registry_unreachable(output: str) -> bool:
    words = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "network", "Network",
             "Could not fetch", "No matching distribution", "Temporary failure", "Name or service not known")
    return any(w in output for w in words)


def test_the_js_client_completes_tasks(live_server, ext_engine, tmp_path):
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are not installed")
    install = subprocess.run([npm, "install", "--prefix", str(tmp_path), "--no-audit", "--no-fund",
                              "--loglevel=error", JS_CLIENT], check=False, capture_output=True, text=True,
                             timeout=300)
    if install.returncode != 0:
        output = install.stdout + install.stderr
        if _registry_unreachable(output):
            pytest.skip(f"the npm registry cannot be reached: {output.strip()[-300:]}")
        pytest.fail(f"npm install {JS_CLIENT} failed: {output[-2000:]}")
    script = tmp_path / "worker.mjs"
    script.write_text(JS_WORKER, encoding="utf-8")
    instances = [start_simple(ext_engine, "js-topic", business_key=f"JS-{i}") for i in range(3)]
    run = subprocess.run([node, str(script), live_server, *WORKER, str(len(instances))], cwd=tmp_path,
                         check=False, capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"done": 3}
    for inst in instances:
        info = ext_engine.get_instance(inst["id"])
        assert info["status"] == "completed"
        assert info["variables"]["handledBy"] == "js" and info["variables"]["answer"] == 42
        assert info["variables"]["greetingSeen"] == "您好 张三"
    assert ext_engine.external_tasks.count() == 0


def _python_client():
    try:
        return importlib.import_module("camunda.external_task.external_task_worker")
    except ImportError:
        pass
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *PY_CLIENT], check=False,
                             capture_output=True, text=True, timeout=300)
    if install.returncode != 0:
        output = install.stdout + install.stderr
        if _registry_unreachable(output):
            pytest.skip(f"PyPI cannot be reached: {output.strip()[-300:]}")
        pytest.fail(f"pip install {' '.join(PY_CLIENT)} failed: {output[-2000:]}")
    importlib.invalidate_caches()
    return importlib.import_module("camunda.external_task.external_task_worker")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the client's pydantic v1-style validators
def test_the_python_client_completes_fails_and_reports_bpmn_errors(live_server, ext_engine):
    module = _python_client()
    config = {"auth_basic": {"username": WORKER[0], "password": WORKER[1]}, "maxTasks": 1, "lockDuration": 20_000,
              "asyncResponseTimeout": 1_000, "retries": 1, "retryTimeout": 0, "sleepSeconds": 0}
    worker = module.ExternalTaskWorker(worker_id="py-worker", base_url=live_server, config=config)

    done = [start_simple(ext_engine, "py-topic", business_key=f"PY-{i}") for i in range(2)]
    failing = start_simple(ext_engine, "py-fail", business_key="PY-FAIL")
    declined = ext_engine.start("payment", variables={"fee": 9})

    def complete(task):
        return task.complete({"handledBy": "python", "patientSeen": task.get_variable("patientName")})

    def fail(task):
        return task.failure("外部系统不可用", "connection refused", max_retries=0, retry_timeout=0)

    def decline(task):
        return task.bpmn_error("DECLINED", "卡已冻结", {"note": "from python"})

    deadline = time.monotonic() + 30
    while ext_engine.external_tasks.count() and time.monotonic() < deadline:
        for topic_name, action in (("py-topic", complete), ("py-fail", fail), ("charge", decline)):
            try:
                worker.fetch_and_execute(topic_name, action)
            except module.NoExternalTaskFound:
                pass
        if ext_engine.external_tasks.count() == 1 and ext_engine.external_tasks.count_open_incidents() == 1:
            break

    for inst in done:
        info = ext_engine.get_instance(inst["id"])
        assert info["status"] == "completed"
        assert info["variables"]["handledBy"] == "python" and info["variables"]["patientSeen"] == "张三"
    [incident] = ext_engine.external_tasks.query_incidents()[0]
    assert incident["instance_id"] == failing["id"] and incident["message"] == "外部系统不可用"
    variables = ext_engine.get_instance(declined["id"])["variables"]
    assert variables["declineCode"] == "DECLINED" and variables["note"] == "from python"
