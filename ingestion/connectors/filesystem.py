"""A folder on the server, read recursively. Changes are found by file stamps (mtime, size)
kept in the checkpoint, so an unchanged file is never read again; deletions by listing."""

from __future__ import annotations

import fnmatch
import mimetypes
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.connectors import SourceDocument, SourceFailure, SourceItem, SyncCheckpoint, map_acl
from core.errors import InvalidInput
from ingestion.connectors._policy import AccessPolicy


class FilesystemConfig(BaseModel):
    """`include` / `exclude` are globs on the path relative to `root` (`*` also crosses
    folders; a pattern without `/` matches the file name). `acl_by_glob` gives matching files
    their ACL (first match wins; bare names are groups); other files get the connector's
    `acl_default`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["filesystem"] = "filesystem"
    root: str = Field(min_length=1)
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    acl_by_glob: dict[str, list[str]] = Field(default_factory=dict)

    def check_access(self, policy: AccessPolicy) -> None:
        root = policy.check_path(Path(self.root), "root")
        if not root.is_dir():
            raise InvalidInput(f"root {self.root!r} is not a directory on the server", field="config")

    def public(self) -> dict[str, Any]:
        return self.model_dump()

    def build(self, policy: AccessPolicy) -> FilesystemConnector:
        return FilesystemConnector(self, policy)


def _matches(rel: str, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel if "/" in p else name, p) for p in patterns)


class FilesystemConnector:
    def __init__(self, config: FilesystemConfig, policy: AccessPolicy) -> None:
        self._config = config
        self._policy = policy
        self._root = policy.check_path(Path(config.root), "root")
        self._stamps: dict[str, str] = {}

    def _files(self) -> Iterator[tuple[str, Path, os.stat_result]]:
        """Regular files under root that pass the globs; symlinks leading outside root are
        ignored, so a link cannot expose a file the allow-list does not cover."""
        for dirpath, dirnames, filenames in os.walk(self._root, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                rel = path.relative_to(self._root).as_posix()
                if not _matches(rel, self._config.include) or _matches(rel, self._config.exclude):
                    continue
                try:
                    real = path.resolve()
                    if not real.is_relative_to(self._root) or not real.is_file():
                        continue
                    yield rel, real, real.stat()
                except OSError:
                    continue

    def _acl(self, rel: str) -> list[str]:
        for pattern, acl in self._config.acl_by_glob.items():
            if _matches(rel, [pattern]):
                return map_acl(acl)
        return []

    def poll(self, checkpoint: SyncCheckpoint) -> Iterator[SourceItem]:
        previous: dict[str, str] = dict(checkpoint.state.get("files", {}))
        self._stamps = {}
        for rel, path, st in self._files():
            stamp = f"{st.st_mtime_ns}:{st.st_size}"
            if previous.get(rel) == stamp:
                self._stamps[rel] = stamp
                continue
            if st.st_size > self._policy.max_bytes:
                yield SourceFailure(external_id=rel, reason=f"the file is larger than the {self._policy.max_bytes} "
                                    "byte limit (CAIRN_INGESTION__MAX_UPLOAD_BYTES)")
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                yield SourceFailure(external_id=rel, reason=f"could not read the file: {exc.strerror or 'I/O error'}")
                continue
            self._stamps[rel] = stamp  # only files read successfully; the rest are retried next time
            yield SourceDocument(
                external_id=rel, title=path.name, content=data, filename=path.name,
                content_type=mimetypes.guess_type(path.name)[0], acl=self._acl(rel),
                metadata={"path": rel}, updated_at=datetime.fromtimestamp(st.st_mtime, UTC),
            )

    def next_checkpoint(self) -> SyncCheckpoint:
        return SyncCheckpoint(state={"files": self._stamps})

    def list_ids(self) -> set[str]:
        return {rel for rel, _path, _st in self._files()}

    def close(self) -> None:
        return None
