"""`cairn audit verify`: checks the hash chains by reading the configured database directly
(CAIRN_DATABASE_URL, or the SQLite file under CAIRN_DATA_DIR). It needs no running server and no
API key, so an auditor can run it on a copy of the database; it only reads. Over HTTP, an admin
can check their own tenant with `GET /v1/audit/verify`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.settings import get_settings


def cmd_audit(args: argparse.Namespace) -> int:
    from sqlalchemy import inspect

    from app.db import make_engine, make_session_factory
    from app.services.audit import AuditLog

    settings = get_settings()
    engine = make_engine(args.database_url or settings.sql_url)
    try:
        if not inspect(engine).has_table("audit_events"):
            print("no audit trail in this database: point CAIRN_DATABASE_URL / CAIRN_DATA_DIR at the "
                  "server's database (the server creates the tables when it starts)", file=sys.stderr)
            return 2
        log = AuditLog(make_session_factory(engine))
        tenants = args.tenant or log.tenants()
        broken = 0
        for tenant in tenants:
            result = log.verify(tenant)
            if result.ok:
                print(f"OK      tenant {tenant}: {result.events} events, head {result.head_hash or '-'}")
            else:
                broken += 1
                print(f"BROKEN  tenant {tenant}: event {result.broken_seq} (id {result.broken_id or '-'}): "
                      f"{result.reason}; the {result.events} events before it are intact")
        if not tenants:
            print("OK      no audit events yet")
        return 1 if broken else 0
    finally:
        engine.dispose()


def add_parser(sub: Any) -> None:
    p = sub.add_parser("audit", help="audit trail tools")
    audit = p.add_subparsers(dest="audit_command", required=True)
    v = audit.add_parser("verify", help="check every tenant's hash chain (reads the database directly)")
    v.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    v.add_argument("--database-url", help="default: the configured database")
    p.set_defaults(fn=cmd_audit)
