"""`AliasedIndex`: the one `VectorIndex` the rest of the process holds, pointing at whichever
collection generation serves now. A reindex builds a new generation beside it and `swap()`s
the pointer; the embedded engine has no server-side alias, so this is its alias.

Why a swap cannot fail a query: every call reads the pointer once and runs to the end on the
generation it read, and a replaced generation stays open (kept for rollback) until an explicit
`retire()`, which waits for the calls still running on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from core.models import AccessScope, IndexFilter, IndexHit, IndexPoint, IndexQuery
from core.protocols import VectorIndex

T = TypeVar("T")


class AliasedIndex:
    def __init__(self, target: VectorIndex, name: str = "") -> None:
        self._target = target
        self.name = name  # the generation `target` is, as the alias records it
        self._lock = threading.Condition()
        self._busy: dict[int, int] = {}  # id(generation) -> calls running on it

    @property
    def target(self) -> VectorIndex:
        return self._target

    @contextmanager
    def _use(self) -> Iterator[VectorIndex]:
        with self._lock:
            target = self._target
            self._busy[id(target)] = self._busy.get(id(target), 0) + 1
        try:
            yield target
        finally:
            with self._lock:
                self._busy[id(target)] -= 1
                if not self._busy[id(target)]:
                    del self._busy[id(target)]
                    self._lock.notify_all()

    def _call(self, fn: Callable[[VectorIndex], T]) -> T:
        with self._use() as target:
            return fn(target)

    def swap(self, target: VectorIndex, name: str) -> VectorIndex:
        """Point every later call at `target` (already warmed up); returns the replaced one."""
        with self._lock:
            old, self._target, self.name = self._target, target, name
        return old

    def retire(self, old: VectorIndex, timeout_s: float = 30.0) -> None:
        """Close a generation no longer served, once the calls still running on it are done."""
        with self._lock:
            if old is self._target:
                raise ValueError("the generation being served cannot be retired")
            self._lock.wait_for(lambda: id(old) not in self._busy, timeout=timeout_s)
        old.close()

    # ---- VectorIndex --------------------------------------------------------------------

    def warm_up(self) -> None:
        self._call(lambda t: t.warm_up())

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        self._call(lambda t: t.upsert(points))

    def delete_versions(
        self, tenant_id: str, doc_id: str, *, below: int | None = None, only: int | None = None
    ) -> None:
        self._call(lambda t: t.delete_versions(tenant_id, doc_id, below=below, only=only))

    def query(self, q: IndexQuery) -> list[IndexHit]:
        return self._call(lambda t: t.query(q))

    def query_batch(self, queries: Sequence[IndexQuery]) -> list[list[IndexHit]]:
        return self._call(lambda t: t.query_batch(queries))

    def count(self, scope: AccessScope, filter: IndexFilter | None = None) -> int:
        return self._call(lambda t: t.count(scope, filter))

    def chunks_of(self, scope: AccessScope, doc_id: str, version: int | None = None) -> list[IndexHit]:
        return self._call(lambda t: t.chunks_of(scope, doc_id, version))

    def retrieve(self, scope: AccessScope, ids: Sequence[str], *, vectors: bool = False) -> list[IndexHit]:
        return self._call(lambda t: t.retrieve(scope, ids, vectors=vectors))

    def close(self) -> None:
        self._call(lambda t: t.close())
