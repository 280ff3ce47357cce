"""Command line of retention and patient data (engine/retention.py), part of `hospital-workflow`:

    hospital-workflow retention run [--user NAME]
    hospital-workflow retention status INSTANCE_ID
    hospital-workflow patient export (--record NO | --phone NUMBER) --user NAME [--out FILE]
    hospital-workflow patient anonymize INSTANCE_ID --reason TEXT --user NAME
    hospital-workflow patient erase INSTANCE_ID --reason TEXT --user NAME [--within-retention]

Each export, anonymization and erasure is written to the audit log under --user.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from pathlib import Path

from engine import retention


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2,
                      default=lambda v: v.isoformat() if isinstance(v, datetime | date) else str(v))


def cmd_retention(engine, args):
    if args.action == "run":
        print(_json(retention.run_retention(engine, user=args.user or "cli")))
    else:
        if not args.instance_id:
            raise ValueError("retention status needs an INSTANCE_ID")
        print(_json(retention.case_status(engine, args.instance_id)))


def cmd_patient(engine, args):
    if args.action == "export":
        payload = retention.export_patient(engine, record=args.record, phone=args.phone, user=args.user)
        text = _json(payload)
        if args.out:
            path = Path(args.out)
            path.write_text(text, encoding="utf-8")
            os.chmod(path, 0o600)  # patient data: readable by the one who exported it
            print(f"{len(payload['cases'])} case(s) written to {path}")
        else:
            print(text)
        return
    if not args.instance_id:
        raise ValueError(f"patient {args.action} needs an INSTANCE_ID")
    if args.action == "anonymize":
        print(_json(retention.anonymize(engine, args.instance_id, user=args.user, reason=args.reason)))
    else:
        print(_json(retention.erase(engine, args.instance_id, user=args.user, reason=args.reason,
                                    within_retention=args.within_retention)))


def add_commands(sub) -> None:
    p = sub.add_parser("retention", help="anonymize finished cases past retention now (the daily job) | "
                                         "status INSTANCE_ID")
    p.add_argument("action", choices=["run", "status"])
    p.add_argument("instance_id", nargs="?")
    p.add_argument("--user", help="recorded in the audit log (default: cli)")
    p.set_defaults(func=cmd_retention)

    p = sub.add_parser("patient", help="patient data: export (--record/--phone) | anonymize ID | erase ID")
    p.add_argument("action", choices=["export", "anonymize", "erase"])
    p.add_argument("instance_id", nargs="?")
    p.add_argument("--record", help="export: the patient's record number (病历号/住院号)")
    p.add_argument("--phone", help="export: a phone number held in the cases")
    p.add_argument("--out", help="export: write the JSON to this file (mode 600) instead of printing it")
    p.add_argument("--reason", help="anonymize/erase: why (recorded in the audit log)")
    p.add_argument("--within-retention", action="store_true",
                   help="erase: confirm a legal reason to erase a case within its retention period")
    p.add_argument("--user", required=True, help="who does it (recorded in the audit log)")
    p.set_defaults(func=cmd_patient)
