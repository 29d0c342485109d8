"""The embedded default's scheduler: one daemon thread that, every tick, starts the syncs whose
interval has passed (`ConnectorService.run_due`). Scale-out runs it on one replica only
(CAIRN_CONNECTORS__SCHEDULER=false elsewhere) or replaces it with a Celery beat entry that calls
the same `run_due`; a second scheduler is harmless anyway, since a connector never has two
syncs queued or running at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class SyncScheduler:
    def __init__(self, run_due: Callable[[], list[str]], tick_s: float = 15.0) -> None:
        self._run_due = run_due
        self._tick_s = tick_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cairn-connector-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._tick_s):
            try:
                started = self._run_due()
            except Exception:  # a database hiccup must not end the schedule
                log.exception("connector scheduler tick failed")
                continue
            if started:
                log.info("scheduled %d connector syncs", len(started))

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
