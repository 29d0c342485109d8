"""Full garbage-collection pause in a started server, before and after `freeze_startup_objects`.

    .venv/bin/python benchmarks/gc_pause.py

A started Cairn process holds the embedding model, the engine and the app: objects a full
collection walks every time it runs, stopping every thread. `cairn serve` and `cairn worker`
freeze them once loaded (app/cli.py). This starts a Container on a scratch data directory and
times `gc.collect()` three times as loaded, then three times after the freeze. Prints JSON.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.cli import freeze_startup_objects  # noqa: E402
from app.container import Container  # noqa: E402
from core.settings import Settings  # noqa: E402


def full_collections(n: int = 3) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        gc.collect()
        out.append(round(1000 * (time.perf_counter() - t0), 2))
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        c = Container(Settings(data_dir=tmp, admin_key="k" * 24))
        c.start()
        try:
            tracked = len(gc.get_objects())
            before = full_collections()
            freeze_startup_objects()
            after = full_collections()
            result = {
                "tracked_objects": tracked,
                "frozen_objects": gc.get_freeze_count(),
                "full_collection_ms_as_loaded": before,
                "full_collection_ms_after_freeze": after,
                "after_vs_before_median": round(sorted(after)[1] / sorted(before)[1], 4),
            }
        finally:
            c.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
