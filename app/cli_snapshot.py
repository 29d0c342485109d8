"""`cairn snapshot create | list | restore`: offline backups of the embedded default (see
app/snapshots.py for why the server has to be stopped)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.errors import CairnError
from core.settings import get_settings


def cmd_snapshot(args: argparse.Namespace) -> int:
    from app import snapshots

    settings = get_settings()
    try:
        if args.snapshot_command == "create":
            info = snapshots.create(settings, args.name)
            print(f"created {info.name}: {info.documents} documents, {info.size_bytes} bytes -> {info.path}")
        elif args.snapshot_command == "list":
            for info in snapshots.list_snapshots(settings):
                print(f"{info.name}\t{info.created_at}\t{info.documents} documents\t{info.size_bytes} bytes")
        else:
            info = snapshots.restore(settings, args.name)
            print(f"restored {info.name} ({info.documents} documents); the replaced data was moved under "
                  f"{settings.data_dir / 'snapshots'}")
    except CairnError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("snapshot", help="back up / restore the data dir (embedded default; server stopped)")
    snap = p.add_subparsers(dest="snapshot_command", required=True)
    c = snap.add_parser("create", help="write <data_dir>/snapshots/<name>.tar.gz")
    c.add_argument("--name")
    snap.add_parser("list", help="list snapshots")
    r = snap.add_parser("restore", help="replace index + metadata + originals with a snapshot")
    r.add_argument("name")
    p.set_defaults(fn=cmd_snapshot)
