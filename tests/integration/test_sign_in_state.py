"""Sessions and the account lock in the database, on SQLite and PostgreSQL: what every worker
process sees, whichever one handled the sign-in."""

from __future__ import annotations

import threading
from datetime import timedelta

from alembic import command
from sqlalchemy import inspect

from engine.identity import IdentityService


def test_sessions_live_until_revoked_idle_or_the_account_is_deactivated(any_engine, clock):
    identity = IdentityService(any_engine)
    identity.create_demo_staff()
    first = identity.open_session("nurse", address="10.1.2.3", user_agent="Mozilla/5.0 " + "x" * 400)
    second = identity.open_session("nurse")
    found = identity.session_account(first)
    assert found.username == "nurse" and found.groups == ("nursing", "ward_nurse")
    sessions = identity.live_sessions("nurse")
    assert {s.address for s in sessions} == {"10.1.2.3", None}
    assert {len(s.user_agent or "") for s in sessions} == {256, 0}  # kept to the column's size
    assert identity.session_account("forged") is None and identity.session_account("") is None

    assert identity.revoke_session(first) and not identity.revoke_session(first)
    assert identity.session_account(first) is None and identity.session_account(second) is not None

    clock.advance(minutes=any_engine.settings.session_idle_minutes + 1)
    assert identity.session_account(second) is None
    third = identity.open_session("nurse")
    identity.update_user("nurse", active=False)
    assert identity.session_account(third) is None and identity.live_sessions("nurse") == []


def test_the_lock_counts_failures_in_the_window_and_ends_by_itself(any_engine, clock):
    identity = IdentityService(any_engine)
    identity.create_demo_staff()
    for _ in range(4):
        assert identity.record_failed_sign_in("caller") is None
    state = identity.sign_in_state("caller")
    assert state.failures == 4 and identity.locked_for(state) is None
    until = identity.record_failed_sign_in("caller")
    assert until == clock.now() + timedelta(minutes=15)
    assert identity.locked_for(identity.sign_in_state("caller")) == timedelta(minutes=15)
    assert identity.record_failed_sign_in("caller") is None  # refused while locked: not extended
    clock.advance(minutes=15)
    state = identity.sign_in_state("caller")
    assert identity.locked_for(state) is None and state.failures == 0
    assert identity.record_failed_sign_in("ghost") is None
    assert identity.sign_in_state("ghost").user_id is None and identity.sign_in_state("ghost").failures == 1
    assert identity.clear_failed_sign_ins("ghost") and not identity.clear_failed_sign_ins("ghost")


def test_concurrent_first_failures_of_a_name_are_all_counted(any_engine):
    identity = IdentityService(any_engine)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def fail():
        try:
            start.wait()
            IdentityService(any_engine).record_failed_sign_in("raced")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fail) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert identity.sign_in_state("raced").failures == 4


def test_migration_0005_downgrades_and_upgrades(engine):
    cfg = engine.db.alembic_config()
    with engine.db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    tables = set(inspect(engine.db.engine).get_table_names())
    assert "user_sessions" not in tables and "login_failures" not in tables
    engine.db.upgrade()
    tables = set(inspect(engine.db.engine).get_table_names())
    assert {"user_sessions", "login_failures"} <= tables
