"""Command line of the service: `hospital-workflow <command>` (see README, "Operating without the UI").

Every command drives the engine directly (no web server needed) and prints JSON or a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from datetime import date, datetime
from pathlib import Path

from engine.config import Settings
from engine.errors import EngineError
from engine.identity import IdentityService
from engine.privacy import install_log_filters
from engine.service import TaskQuery, WorkflowEngine


def _json_default(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _print(value) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=_json_default))


def _variables(pairs: list[str] | None, json_text: str | None) -> dict:
    out = {}
    if json_text:
        loaded = json.loads(json_text)
        if not isinstance(loaded, dict):
            raise EngineError("--json must be a JSON object")
        out.update(loaded)
    for pair in pairs or []:
        if "=" not in pair:
            raise EngineError(f"--var '{pair}' must look like name=value")
        name, raw = pair.split("=", 1)
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


def build_engine(args=None) -> WorkflowEngine:
    settings = Settings.from_env(database_url=getattr(args, "database_url", None))
    return WorkflowEngine.from_settings(settings)


def cmd_init_db(engine, args):
    engine.init_db()
    print(f"database ready: {engine.db.url}")


def cmd_setup(engine, args):
    """Everything `make run` needs before serving: schema, groups, workflows, demo staff."""
    new = engine.db.is_empty()
    engine.init_db()
    identity = IdentityService(engine)
    identity.ensure_groups()
    result = engine.deploy_directory(user="setup")
    print(f"database ready: {engine.db.url}")
    if result.created:
        names = [f"{d['key']} v{d['version']}" for d in result.process_definitions + result.decision_definitions]
        print("deployed: " + ", ".join(names))
    else:
        print("workflows unchanged")
    if args.demo and new:
        identity.create_demo_staff()
        print("demo staff created (password 'demo'): see README")
        from engine.demo import seed_demo_instances

        seeded = seed_demo_instances(engine)
        print(f"demo instances started: {seeded}")


def cmd_deploy(engine, args):
    if args.files:
        files = [(Path(f).name, Path(f).read_bytes()) for f in args.files]
        result = engine.deploy(files, name=args.name or "cli", source="cli", user=args.user,
                               changed_only=not args.force)
    else:
        result = engine.deploy_directory(Path(args.dir) if args.dir else None, user=args.user)
    _print({"deployment_id": result.deployment_id, "created": result.created,
            "process_definitions": result.process_definitions,
            "decision_definitions": result.decision_definitions, "unchanged": result.unchanged})


def cmd_start(engine, args):
    _print(engine.start(args.key, business_key=args.business_key, variables=_variables(args.var, args.json),
                        user=args.user))


def cmd_tasks(engine, args):
    groups = engine.user_groups(args.user) if args.user else None
    query = TaskQuery(visible_to_user=args.user, visible_to_groups=groups, process_key=args.process,
                      business_key=args.business_key, overdue=True if args.overdue else None,
                      limit=args.limit)
    tasks = engine.list_tasks(query)
    if args.json_out:
        _print(tasks)
        return
    for t in tasks:
        due = t["due_at"].isoformat(timespec="minutes") if t["due_at"] else "-"
        print(f"{t['id']}  {t['process_key']:<20} {t['business_key'] or '-':<18} {t['name']:<16} "
              f"assignee={t['assignee'] or '-':<12} due={due} {t['sla_state']}")
    print(f"{len(tasks)} task(s)")


def cmd_claim(engine, args):
    _print(engine.claim(args.task_id, args.user))


def cmd_complete(engine, args):
    _print(engine.complete(args.task_id, _variables(args.var, args.json), user=args.user))


def cmd_instances(engine, args):
    _print(engine.list_instances(process_key=args.process, status=args.status, business_key=args.business_key,
                                 limit=args.limit))


def cmd_instance(engine, args):
    _print(engine.get_instance(args.instance_id))


def cmd_cancel(engine, args):
    engine.cancel(args.instance_id, user=args.user, reason=args.reason)
    print("cancelled")


def cmd_message(engine, args):
    _print(engine.correlate_message(args.name, business_key=args.business_key,
                                    variables=_variables(args.var, args.json), user=args.user))


def _new_password(args) -> str:
    """From stdin with --password-stdin (scripts), else typed twice at a prompt; never an argument
    (it would show in the process list and the shell history)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("new password (at least 10 characters, not the user name, not a common one): ")
    if first != getpass.getpass("again: "):
        raise EngineError("the two passwords differ")
    return first


def cmd_user(engine, args):
    """Staff accounts without the admin pages: the first administrator of a new installation,
    a password reset, deactivation, an early unlock."""
    identity = IdentityService(engine)
    if args.action != "list" and not args.username:
        raise EngineError(f"user {args.action}: name the account (hospital-workflow user {args.action} USERNAME)")
    if args.action == "list":
        for user in identity.list_users():
            groups = ",".join(g.id for g in user.groups)
            print(f"{user.username:<20} {'active' if user.active else 'inactive':<9} {user.display_name}  [{groups}]")
    elif args.action == "create":
        identity.ensure_groups()
        identity.create_user(args.username, args.name or args.username, _new_password(args), args.group or [],
                             phone=args.phone)
        print(f"user {args.username} created")
    elif args.action == "password":
        identity.update_user(args.username, password=_new_password(args))
        print(f"password of {args.username} changed; its sessions are ended")
    elif args.action in ("deactivate", "activate"):
        identity.update_user(args.username, active=args.action == "activate")
        print(f"user {args.username} {args.action}d" + ("; its sessions are ended" if args.action == "deactivate" else ""))
    elif args.action == "unlock":
        if identity.get_user(args.username) is None:
            raise EngineError(f"no user {args.username}")
        identity.clear_failed_sign_ins(args.username)
        print(f"user {args.username} unlocked")
    elif args.action == "sign-out":
        print(f"{identity.revoke_sessions(args.username, 'admin')} session(s) of {args.username} ended")
    if args.action != "list":
        engine.audit.record(CLI_USER_AUDIT[args.action], user=f"cli:{os.environ.get('USER') or '?'}",
                            resource_type="account", resource_id=args.username, details={"interface": "cli"})


CLI_USER_AUDIT = {"create": "user_created", "password": "password_reset", "deactivate": "deactivated",
                  "activate": "activated", "unlock": "unlocked", "sign-out": "sessions_revoked"}


def cmd_calendar(engine, args):
    if args.action == "show":
        _print(engine.calendar_overrides())
    elif args.action == "set":
        engine.set_calendar_day(date.fromisoformat(args.day), args.working, args.name or "", user=args.user)
        print(f"{args.day}: {'working day' if args.working else 'day off'} {args.name or ''}".strip())
    elif args.action == "remove":
        engine.remove_calendar_day(date.fromisoformat(args.day), user=args.user)
        print(f"{args.day}: override removed")
    elif args.action == "confirm":
        engine.confirm_calendar_year(int(args.year), args.name or "", user=args.user,
                                     seed_from_package=args.seed)
        print(f"{args.year} confirmed")


def cmd_fire_timers(engine, args):
    print(f"{engine.fire_due_timers()} timer(s) fired")


def cmd_scheduler(engine, args):
    from engine.scheduler import TimerScheduler

    scheduler = TimerScheduler(engine)
    scheduler.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"scheduler {scheduler.worker_id} running on {engine.db.url} (Ctrl+C stops)")
    stop.wait()
    scheduler.shutdown()


def cmd_notify_worker(engine, args):
    from engine.notify import run_worker

    run_worker(engine)


def serve_elsewhere(argv: list[str]) -> None:
    """`hospital-workflow serve` lives with the web app (web/serve.py, `hospital-workflow-serve`):
    this only hands over, so the engine never imports the web layer."""
    os.execv(sys.executable, [sys.executable, "-m", "web.serve", *argv])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # SpiffWorkflow logs every task state change and APScheduler every run at INFO: keep them quiet
    for noisy in ("spiff", "apscheduler", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # no patient data in logs: request lines without query values, phone and ID numbers masked
    install_log_filters()
    parser = argparse.ArgumentParser(prog="hospital-workflow", description=__doc__)
    parser.add_argument("--database-url", help="overrides DATABASE_URL")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("init-db", help="create or upgrade the database schema").set_defaults(func=cmd_init_db)

    p = sub.add_parser("setup", help="schema, groups, workflows (and with --demo the demo staff)")
    p.add_argument("--demo", action="store_true")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("deploy", help="deploy workflows/ or the given .bpmn/.dmn files")
    p.add_argument("files", nargs="*")
    p.add_argument("--dir")
    p.add_argument("--name")
    p.add_argument("--user")
    p.add_argument("--force", action="store_true", help="new versions even for unchanged files")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("start", help="start an instance")
    p.add_argument("key")
    p.add_argument("--business-key")
    p.add_argument("--var", action="append", help="name=value (value parsed as JSON when it can be)")
    p.add_argument("--json", help="variables as one JSON object")
    p.add_argument("--user")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("tasks", help="open tasks (of a user: assigned or offered to the user's groups)")
    p.add_argument("--user")
    p.add_argument("--process")
    p.add_argument("--business-key")
    p.add_argument("--overdue", action="store_true")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", dest="json_out", action="store_true")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("claim", help="claim a task")
    p.add_argument("task_id")
    p.add_argument("--user", required=True)
    p.set_defaults(func=cmd_claim)

    p = sub.add_parser("complete", help="complete a task with data")
    p.add_argument("task_id")
    p.add_argument("--var", action="append")
    p.add_argument("--json")
    p.add_argument("--user")
    p.set_defaults(func=cmd_complete)

    p = sub.add_parser("instances", help="list instances")
    p.add_argument("--process")
    p.add_argument("--status")
    p.add_argument("--business-key")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_instances)

    p = sub.add_parser("instance", help="one instance: variables, active elements, path, history")
    p.add_argument("instance_id")
    p.set_defaults(func=cmd_instance)

    p = sub.add_parser("cancel", help="cancel an instance")
    p.add_argument("instance_id")
    p.add_argument("--reason")
    p.add_argument("--user")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("message", help="deliver a message")
    p.add_argument("name")
    p.add_argument("--business-key")
    p.add_argument("--var", action="append")
    p.add_argument("--json")
    p.add_argument("--user")
    p.set_defaults(func=cmd_message)

    p = sub.add_parser("calendar", help="hospital calendar overrides: show | set DAY | remove DAY | confirm YEAR")
    p.add_argument("action", choices=["show", "set", "remove", "confirm"])
    p.add_argument("day", nargs="?", help="YYYY-MM-DD (set/remove)")
    p.add_argument("--year", help="the year to confirm")
    p.add_argument("--working", action="store_true", help="with set: the day is a working day (调休)")
    p.add_argument("--name", help="e.g. 春节, 台风停诊, or a note for confirm")
    p.add_argument("--seed", action="store_true", help="with confirm: copy the package's days of that year")
    p.add_argument("--user")
    p.set_defaults(func=cmd_calendar)

    p = sub.add_parser("user", help="staff accounts: list | create USER | password USER | deactivate USER | "
                                    "activate USER | unlock USER | sign-out USER")
    p.add_argument("action", choices=["list", "create", "password", "deactivate", "activate", "unlock", "sign-out"])
    p.add_argument("username", nargs="?")
    p.add_argument("--name", help="display name (create)")
    p.add_argument("--group", action="append", help="group or role id, repeatable (create), e.g. --group admin")
    p.add_argument("--phone", help="mobile number for text messages (create)")
    p.add_argument("--password-stdin", action="store_true", help="read the new password from the first line of stdin")
    p.set_defaults(func=cmd_user)

    sub.add_parser("fire-timers", help="fire the timers that are due now, once").set_defaults(func=cmd_fire_timers)
    sub.add_parser("scheduler", help="run the timer scheduler (production: beside the web workers)") \
        .set_defaults(func=cmd_scheduler)

    sub.add_parser("notify-worker", help="run the SMS notification worker (topic 'notify') in the foreground") \
        .set_defaults(func=cmd_notify_worker)

    from engine import retention_cli

    retention_cli.add_commands(sub)  # retention run, patient export / anonymize / erase

    sub.add_parser("serve", add_help=False,
                   help="web server with the scheduler and SMS worker: hospital-workflow-serve (web/serve.py)")

    argv = sys.argv[1:] if argv is None else list(argv)
    known, _rest = parser.parse_known_args(argv)
    if known.command == "serve":  # its options are the serve command's own
        if known.database_url:
            os.environ["DATABASE_URL"] = known.database_url
        serve_elsewhere(argv[argv.index("serve") + 1:])
    args = parser.parse_args(argv)
    try:
        engine = build_engine(args)
        args.func(engine, args)
    except EngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except (OSError, json.JSONDecodeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
