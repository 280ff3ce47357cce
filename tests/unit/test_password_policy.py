"""The password policy (length, user name, common passwords), its shipped list, and where it
applies: IdentityService and the CLI; only the demo staff are exempt."""

from __future__ import annotations

import io
import json

import pytest

from engine import cli
from engine.errors import InvalidInput
from engine.identity import IdentityService
from engine.passwords import COMMON_FILE, build_common_list, check_password, is_common


@pytest.mark.parametrize(("password", "rule", "words"), [
    ("short-pw", "length", "密码至少 10 位"),
    ("x" * 129, "length", "密码最多 128 位"),
    ("zhangsan.01", "username", "不能包含用户名"),
    ("ZhangSan", "length", "密码至少 10 位"),
    ("my-ZHANGSAN-pass", "username", "不能包含用户名"),
    ("password123", "common", "密码过于常见"),
    ("P@ssw0rd123", "common", "密码过于常见"),
    ("Woaini1314520", "common", "密码过于常见"),
    ("qwertyuiop", "common", "密码过于常见"),
    ("1qaz2wsx3edc", "common", "密码过于常见"),
    ("hospital2026", "common", "密码过于常见"),
    ("13800138000", "common", "密码过于常见"),  # a mobile number
    ("19850612", "length", "密码至少 10 位"),
    ("2000-01-01", None, None),
    ("aaaaaaaaaaaa", "common", "密码过于常见"),
])
def test_each_refusal_names_the_rule(password, rule, words):
    if rule is None:
        check_password(password, "zhangsan")
        return
    with pytest.raises(InvalidInput) as refused:
        check_password(password, "zhangsan")
    assert refused.value.details == {"field": "password", "rule": rule}
    assert words in refused.value.message and " / password: " in refused.value.message


def test_good_passwords_pass_and_short_names_are_not_looked_for_inside():
    for password in ("Lan-Shan-Hu-7", "correct horse battery staple", "护士站-夜班-2026", "yun.duo.shu.42"):
        check_password(password, "zhangsan")
    check_password("Lin-Yu-Qiao-9", "yu")  # a two-letter name inside a password is chance
    with pytest.raises(InvalidInput, match="密码至少 10 位"):
        check_password("yu", "yu")  # the length is checked first
    with pytest.raises(InvalidInput, match="不能是用户名"):
        check_password("administrator", "administrator")


def test_the_shipped_list_is_what_the_generator_makes():
    shipped = json.loads(COMMON_FILE.read_text(encoding="utf-8"))
    assert shipped == build_common_list()
    assert 3000 <= len(shipped) <= 20000 and all(len(p) >= 10 for p in shipped)
    assert is_common("Admin@2024") and is_common("WELCOME123") and not is_common("Qing-Shan-7429")


def test_identity_service_applies_the_policy_and_the_demo_staff_are_exempt(engine):
    identity = IdentityService(engine)
    identity.create_demo_staff()
    with pytest.raises(InvalidInput, match="密码至少 10 位"):
        identity.create_user("nurse2", "护士 王", "demo", ["ward_nurse"])
    with pytest.raises(InvalidInput, match="不能包含用户名"):
        identity.update_user("nurse", password="nurse-station-9")
    identity.create_user("nurse2", "护士 王", "Ye-Ban-Hu-Shi-3", ["ward_nurse"])
    identity.create_demo_user("trainee", "实习生", ["ward_nurse"])
    from werkzeug.security import check_password_hash

    users = {u.username: u for u in identity.list_users()}
    assert check_password_hash(users["nurse"].password_hash, "demo")  # existing accounts keep working
    assert check_password_hash(users["trainee"].password_hash, "demo")
    assert check_password_hash(users["nurse2"].password_hash, "Ye-Ban-Hu-Shi-3")


def run_cli(engine, monkeypatch, capsys, *args, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(["--database-url", engine.db.url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_user_commands_follow_the_policy(engine, monkeypatch, capsys):
    code, _out, err = run_cli(engine, monkeypatch, capsys, "user", "create", "chief", "--name", "主任 林",
                              "--group", "admin", "--password-stdin", stdin="chief-2026-pass\n")
    assert code == 2 and "密码不能是用户名" in err
    code, out, _err = run_cli(engine, monkeypatch, capsys, "user", "create", "chief", "--name", "主任 林",
                              "--group", "admin", "--password-stdin", stdin="Lan-Shan-Hu-7\n")
    assert code == 0 and "user chief created" in out
    identity = IdentityService(engine)
    token = identity.open_session("chief", address="10.0.0.8")
    assert identity.session_account(token).groups == ("admin",)

    code, _out, err = run_cli(engine, monkeypatch, capsys, "user", "password", "chief", "--password-stdin",
                              stdin="1234567890\n")
    assert code == 2 and "密码过于常见" in err
    code, out, _err = run_cli(engine, monkeypatch, capsys, "user", "password", "chief", "--password-stdin",
                              stdin="Bai-Yun-Shan-8\n")
    assert code == 0 and identity.session_account(token) is None  # a new password ends the sessions

    token = identity.open_session("chief")
    assert run_cli(engine, monkeypatch, capsys, "user", "deactivate", "chief")[0] == 0
    assert identity.session_account(token) is None
    code, out, _err = run_cli(engine, monkeypatch, capsys, "user", "list")
    assert code == 0 and "chief" in out and "inactive" in out
    code, _out, err = run_cli(engine, monkeypatch, capsys, "user", "unlock")
    assert code == 2 and "name the account" in err
    actions = [e["action"] for e in engine.audit.query()[0]]
    assert {"user_created", "password_reset", "deactivated"} <= set(actions)
