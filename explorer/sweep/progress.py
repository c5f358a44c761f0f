"""Progress of a sweep: one bar on a terminal, one line per finished variant elsewhere."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts finished variants (and failed ones) out of ``total``. On a terminal, one bar naming
    what is in flight, with done / failed counts and time left; when stdout is not a terminal, one
    line per finished lowering; nothing when not ``enabled``."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.enabled = total, enabled
        self.stream = stream or sys.stderr
        self.done = self.failed = 0
        self.in_flight: dict[int, str] = {}
        self.bar = None
        self.start = time.monotonic()
        if enabled and self.stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="variant", dynamic_ncols=True, file=self.stream)

    def started(self, job: int, what: str) -> None:
        """``what`` (e.g. ``resnet18 fused cpu/npu``) is now being compiled."""
        self.in_flight[job] = what
        self._describe()

    def finished(self, job: int | None, what: str, variants: int, failed: bool, detail: str = "") -> None:
        """``variants`` rows of ``what`` are finished (``failed``: without numbers)."""
        self.in_flight.pop(job, None)
        self.done += variants
        self.failed += variants if failed else 0
        if self.bar is not None:
            self.bar.update(variants)
            self._describe()
        elif self.enabled:
            print(f"[{self.done}/{self.total}] {what}: {detail}", file=self.stream, flush=True)

    def phase(self, text: str) -> None:
        """A phase that is not one variant (calibrating, timing) has begun."""
        if self.bar is not None:
            self.bar.set_description(text)
        elif self.enabled:
            print(text, file=self.stream, flush=True)

    def _describe(self) -> None:
        if self.bar is not None:
            self.bar.set_description(", ".join(self.in_flight.values())[:60] or "sweep")
            self.bar.set_postfix_str(f"{self.done} done, {self.failed} failed")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
