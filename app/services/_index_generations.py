"""Collection generations behind the alias, for the two deployments.

Remote Qdrant: `retrieval.index.qdrant_remote.QdrantGenerations` (server-side alias). Embedded:
`EdgeGenerations` below — each generation is its own engine directory under the data dir
(`index` is the first, then `index-g2`, `index-g3`, ...); the process's `AliasedIndex` is the
alias, and the `index_aliases` row (written by the reindex service) remembers which directory
serves, so a restart opens the right one.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Protocol

from core.errors import IndexFailure, InvalidInput
from core.protocols import VectorIndex
from retrieval.index.aliased import AliasedIndex

FIRST = "index"


class Generations(Protocol):
    alias: str

    def serving(self) -> str: ...

    def next_name(self, serving: str) -> str: ...

    def create(self, name: str) -> VectorIndex: ...

    def open(self, name: str) -> VectorIndex: ...

    def swap(self, name: str) -> None: ...

    def drop(self, name: str) -> None: ...


class EdgeGenerations:
    """Engine directories under `data_dir`; `swap` moves the process's `AliasedIndex`.

    Generations that were served stay open in this process (the engine locks its directory, and
    a kept generation must be ready for an instant rollback) until `drop` closes and deletes them.
    """

    def __init__(self, data_dir: Path, aliased: AliasedIndex, dense_dim: int = 384, alias: str = "chunks") -> None:
        self._dir = data_dir
        self._aliased = aliased
        self._dim = dense_dim
        self.alias = alias
        self._open: dict[str, VectorIndex] = {}
        self._built: dict[str, VectorIndex] = {}
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        if name != FIRST and not (name.startswith("index-g") and name[7:].isdigit()):
            raise InvalidInput(f"{name!r} is not an index generation name")
        return self._dir / name

    def serving(self) -> str:
        return self._aliased.name or FIRST

    def next_name(self, serving: str) -> str:
        """One past the highest generation on disk, so a kept rollback target is never reused."""
        numbers = [int(p.name[7:]) for p in self._dir.glob("index-g*") if p.name[7:].isdigit()]
        return f"index-g{max([1, *numbers]) + 1}"

    def _new(self, name: str) -> VectorIndex:
        from retrieval.index.edge import EdgeIndex

        return EdgeIndex(self.path(name), dense_dim=self._dim)

    def create(self, name: str) -> VectorIndex:
        self.drop(name)
        index = self._new(name)
        index.warm_up()
        with self._lock:
            self._built[name] = index
        return index

    def open(self, name: str) -> VectorIndex:
        with self._lock:
            kept = self._open.get(name) or self._built.get(name)
        if kept is not None:
            return kept
        if not self.path(name).is_dir():
            raise IndexFailure(f"index generation {name!r} no longer exists under the data directory")
        index = self._new(name)
        index.warm_up()
        with self._lock:
            self._built[name] = index
        return index

    def swap(self, name: str) -> None:
        with self._lock:
            target = self._built.pop(name, None) or self._open.pop(name, None)
        if target is None:
            target = self.open(name)
            with self._lock:
                self._built.pop(name, None)
        old_name = self.serving()
        old = self._aliased.swap(target, name)
        with self._lock:
            self._open[old_name] = old

    def drop(self, name: str) -> None:
        if name == self.serving():
            raise InvalidInput("the generation being served cannot be dropped")
        with self._lock:
            index = self._open.pop(name, None) or self._built.pop(name, None)
        if index is not None:
            self._aliased.retire(index)
        shutil.rmtree(self.path(name), ignore_errors=True)

    def attach(self, name: str) -> None:
        """At start, before the engine opens: serve the generation the alias row names."""
        if name != self.serving():
            self._aliased.swap(self._new(name), name)

    def close(self) -> None:
        """Flush and release the generations kept open for rollback (the served one is the
        container's to close)."""
        with self._lock:
            kept = [*self._open.values(), *self._built.values()]
            self._open.clear()
            self._built.clear()
        for index in kept:
            index.close()
