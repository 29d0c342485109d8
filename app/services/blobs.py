"""Original uploads, content-addressed on disk, so a reindex or a retried job never needs the
client to send the file again."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, tenant_id: str, digest: str) -> Path:
        tenant_dir = hashlib.sha256(tenant_id.encode()).hexdigest()[:16]
        return self._root / tenant_dir / digest[:2] / digest

    def put(self, tenant_id: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(tenant_id, digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return digest

    def get(self, tenant_id: str, digest: str) -> bytes:
        return self._path(tenant_id, digest).read_bytes()

    def delete(self, tenant_id: str, digest: str) -> None:
        self._path(tenant_id, digest).unlink(missing_ok=True)
