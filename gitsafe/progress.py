"""A progress bar for the fetch on a terminal: objects, bytes received and rate.

Shown on stderr only when it is a terminal and the caller asked for it (the CLI without -q);
otherwise every method is a no-op, so a deploy log never fills with bar redraws.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class FetchProgress:
    def __init__(self, enabled: bool, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.label = label
        self._progress: Any = None
        self._task: Any = None
        self._started = time.monotonic()

    def __enter__(self) -> FetchProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("objects, {task.fields[size]} at {task.fields[rate]}"),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=None, size="0 B", rate="-")
            self._started = time.monotonic()
        return self

    def update(self, received: int, total: int, received_bytes: int) -> None:
        if self._progress is None:
            return
        # The bar follows the object count (the server announces the total); the byte total
        # is unknown until the pack ends, so bytes are shown as a count and a rate.
        elapsed = max(time.monotonic() - self._started, 1e-3)
        self._progress.update(
            self._task,
            completed=received,
            total=total or None,
            size=_size(received_bytes),
            rate=f"{_size(int(received_bytes / elapsed))}/s",
        )

    def __exit__(self, *_exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
