"""An os-ken app for profiling only: how much time the controller process spends in Python's GC.

Run beside the controller (``osken-manager controller.app bench.acl_gcprobe``)
with ``VMN_GCPROBE_OUT=path``: every 0.5 s it appends one JSON line with the
seconds spent in garbage collection so far, collections per generation, the
number of objects the collector tracks and the resident set size. It changes
nothing in the controller.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from os_ken.base import app_manager

OUT_ENV = "VMN_GCPROBE_OUT"


class GcProbe(app_manager.OSKenApp):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.out = os.environ.get(OUT_ENV)
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._on_gc)
        if self.out:
            threading.Thread(target=self._writer, daemon=True).start()

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def _writer(self) -> None:
        assert self.out is not None
        while True:
            status = Path("/proc/self/status").read_text().splitlines()
            rss = next((int(line.split()[1]) for line in status if line.startswith("VmRSS")), 0)
            line = {
                "t": time.monotonic(),
                "gc_seconds": round(self.seconds, 4),
                "collections": self.collections,
                "tracked": len(gc.get_objects()),
                "rss_kb": rss,
            }
            with open(self.out, "a") as f:
                f.write(json.dumps(line) + "\n")
            time.sleep(0.5)
