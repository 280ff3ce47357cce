"""`hospital-workflow retention run` and `hospital-workflow patient export|anonymize|erase`."""

from __future__ import annotations

import json
import stat

from engine.audit import AuditQuery
from engine.cli import main
from tests.retention.support import PHONE, RECORD, closed_complaint, register


def _run(engine, capsys, *argv) -> tuple[int, str, str]:
    code = main(["--database-url", engine.db.url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_prints_or_writes_the_patient_data_and_is_audited(hospital, capsys, tmp_path):
    case = closed_complaint(hospital)
    code, out, _err = _run(hospital, capsys, "patient", "export", "--record", RECORD, "--user", "admin")
    assert code == 0
    payload = json.loads(out)
    assert [c["id"] for c in payload["cases"]] == [case]
    assert payload["cases"][0]["variables"]["complainantPhone"] == PHONE
    target = tmp_path / "export.json"
    code, out, _err = _run(hospital, capsys, "patient", "export", "--phone", PHONE, "--user", "admin",
                           "--out", str(target))
    assert code == 0 and "1 case(s)" in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text(encoding="utf-8"))["cases"][0]["id"] == case
    events, total = hospital.audit.query(AuditQuery(action="export"))
    assert total == 2 and {e["user"] for e in events} == {"admin"}


def test_erase_refuses_a_running_case_and_a_case_within_retention_without_confirmation(hospital, capsys):
    running = register(hospital, "TS-RUN")
    code, _out, err = _run(hospital, capsys, "patient", "erase", running, "--reason", "患者申请", "--user", "admin")
    assert code == 2 and "still running" in err
    case = closed_complaint(hospital)
    code, _out, err = _run(hospital, capsys, "patient", "erase", case, "--reason", "患者申请", "--user", "admin")
    assert code == 2 and "retention period" in err
    code, _out, err = _run(hospital, capsys, "patient", "erase", case, "--user", "admin", "--within-retention")
    assert code == 2 and "reason" in err
    code, out, _err = _run(hospital, capsys, "patient", "erase", case, "--reason", "法院判决书要求删除",
                           "--user", "admin", "--within-retention")
    assert code == 0 and json.loads(out)["erased"] is True
    assert hospital.list_instances(business_key="TS-2026-0001") == []


def test_retention_run_and_status(hospital, capsys, monkeypatch):
    monkeypatch.setenv("RETENTION_DAYS", "36500")  # the command line runs on the wall clock
    case = closed_complaint(hospital)
    code, out, _err = _run(hospital, capsys, "retention", "status", case)
    assert code == 0 and json.loads(out)["retention_days"] == 36500
    code, out, _err = _run(hospital, capsys, "retention", "run", "--user", "ops")
    assert code == 0
    result = json.loads(out)
    assert result["anonymized"] == 0 and result["orphaned_rows_deleted"] == 0
    code, out, _err = _run(hospital, capsys, "patient", "anonymize", case, "--reason", "患者申请匿名",
                           "--user", "admin")
    assert code == 0 and json.loads(out)["anonymized"] is True
    assert json.loads(_run(hospital, capsys, "retention", "status", case)[1])["anonymized"] is True


def test_a_bad_retention_setting_is_refused_with_its_name(hospital, capsys, monkeypatch):
    monkeypatch.setenv("RETENTION_DAYS", "three years")
    code, _out, err = _run(hospital, capsys, "retention", "run")
    assert code == 2 and "RETENTION_DAYS" in err
