"""Snapshots of the embedded default: index + SQL metadata + stored originals, as one tar.gz.

Why offline (server stopped): the embedded engine admits one process per data directory, so a
snapshot has to own the engine itself to flush it. `create` and `restore` open the index first,
which proves no server is running (the engine's lock refuses) and replays the WAL, then flush and
close it before copying. SQLite is copied with its online-backup API, so the copy is consistent
even with WAL files beside it. Scale-out deployments use their own tools instead (Qdrant
snapshots, pg_dump), which this refuses to pretend to cover.

Layout: <data_dir>/snapshots/<name>.tar.gz holding manifest.json, cairn.db, blobs/ and every index
generation directory (index/, and index-g2/... after a reindex: the `index_aliases` row in the copied
database names the one that serves, and kept generations stay available for rollback).
`restore` moves what it replaces to <data_dir>/snapshots/before-restore-<time>/ (nothing is lost).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from core.errors import Conflict, InvalidInput, NotFound
from core.settings import Settings

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_PARTS = ("cairn.db", "blobs")
_GENERATION = re.compile(r"^index(-g\d+)?$")


def _is_part(name: str) -> bool:
    return name in _PARTS or bool(_GENERATION.match(name))


def _index_dirs(settings: Settings) -> list[Path]:
    """Every engine generation directory under the data dir (see app/services/_index_generations.py)."""
    if not settings.data_dir.exists():
        return []
    return sorted(p for p in settings.data_dir.iterdir() if p.is_dir() and _GENERATION.match(p.name))


class SnapshotInfo(BaseModel):
    name: str
    path: str
    size_bytes: int
    created_at: str
    documents: int


def _check_embedded(settings: Settings) -> None:
    if settings.qdrant_url or settings.database_url:
        raise InvalidInput(
            "snapshots cover the embedded default only (SQLite + embedded index); with a Qdrant server or "
            "PostgreSQL use their own snapshot / pg_dump tools"
        )


def _own_engine(settings: Settings) -> None:
    """Open, flush and close every index generation: fails with a clear message while a server
    holds them."""
    from retrieval.index.edge import EdgeIndex

    for path in _index_dirs(settings):
        index = EdgeIndex(path, dense_dim=384)
        try:
            index.warm_up()
        except Exception as exc:
            raise Conflict(
                "the data directory is in use (is `cairn serve` running?); stop the server first"
            ) from exc
        index.close()


def _snapshot_dir(settings: Settings) -> Path:
    return settings.data_dir / "snapshots"


def create(settings: Settings, name: str | None = None) -> SnapshotInfo:
    _check_embedded(settings)
    name = name or f"cairn-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    if not _NAME.match(name):
        raise InvalidInput(f"snapshot name {name!r} may only use letters, digits, '.', '_' and '-'")
    target = _snapshot_dir(settings) / f"{name}.tar.gz"
    if target.exists():
        raise Conflict(f"snapshot {name!r} already exists")
    db = settings.data_dir / "cairn.db"
    if not db.exists():
        raise NotFound(f"no Cairn database in {settings.data_dir}")
    _own_engine(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix=".snapshot-") as tmp:
        copy = Path(tmp) / "cairn.db"
        with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)
        with sqlite3.connect(copy) as conn:
            documents = int(conn.execute("select count(*) from documents").fetchone()[0])
        manifest = {"name": name, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "documents": documents, "format": 1}
        partial = target.with_suffix(".partial")
        with tarfile.open(partial, "w:gz") as tf:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
            tf.add(copy, "cairn.db")
            for folder in [*_index_dirs(settings), settings.data_dir / "blobs"]:
                if folder.exists():
                    tf.add(folder, folder.name)
        partial.rename(target)  # a crash mid-write never leaves a plausible-looking snapshot
    return _info(target)


def _info(path: Path) -> SnapshotInfo:
    with tarfile.open(path, "r:gz") as tf:
        fh = tf.extractfile("manifest.json")
        manifest = json.loads(fh.read()) if fh else {}
    return SnapshotInfo(
        name=path.name.removesuffix(".tar.gz"), path=str(path), size_bytes=path.stat().st_size,
        created_at=str(manifest.get("created_at", "")), documents=int(manifest.get("documents", 0)),
    )


def list_snapshots(settings: Settings) -> list[SnapshotInfo]:
    folder = _snapshot_dir(settings)
    return [_info(p) for p in sorted(folder.glob("*.tar.gz"))] if folder.exists() else []


def restore(settings: Settings, name: str) -> SnapshotInfo:
    _check_embedded(settings)
    path = _snapshot_dir(settings) / f"{name}.tar.gz"
    if not _NAME.match(name) or not path.exists():
        raise NotFound(f"snapshot {name!r} not found; `cairn snapshot list` shows what exists")
    info = _info(path)
    _own_engine(settings)
    aside = _snapshot_dir(settings) / f"before-restore-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}"
    aside.mkdir(parents=True)
    current = [*_PARTS, "cairn.db-wal", "cairn.db-shm", *(p.name for p in _index_dirs(settings))]
    for part in current:
        if (settings.data_dir / part).exists():
            shutil.move(settings.data_dir / part, aside / part)
    with tarfile.open(path, "r:gz") as tf:
        members = [m for m in tf.getmembers() if _is_part(m.name.split("/", 1)[0])]
        tf.extractall(settings.data_dir, members=members, filter="data")
    return info
