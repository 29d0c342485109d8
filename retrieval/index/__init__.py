"""`core.protocols.VectorIndex` adapters: `EdgeIndex` (embedded engine, the default) and
`QdrantIndex` (Qdrant server / cluster).

Each adapter is the only importer of its SDK, and this package imports them lazily, so picking
one in the composition root never loads the other vendor library.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retrieval.index.edge import EdgeIndex
    from retrieval.index.qdrant_remote import QdrantIndex

__all__ = ["EdgeIndex", "QdrantIndex"]

_HOMES = {"EdgeIndex": "retrieval.index.edge", "QdrantIndex": "retrieval.index.qdrant_remote"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
