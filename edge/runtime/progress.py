"""A progress bar for a long command (an import), drawn only on a terminal: a pipe or a log gets nothing."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, TextIO


class Bar:
    """One bar per phase of the work; a phase of unknown size pulses until it ends."""

    def __init__(self, stream: TextIO):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                  TimeElapsedColumn(), console=Console(file=stream))
        self._task = None

    def phase(self, name: str, total: int | None) -> None:
        self._end_phase()
        self._task = self._progress.add_task(name, total=total)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def _end_phase(self) -> None:
        if self._task is not None:
            total = self._progress.tasks[-1].total or 1
            self._progress.update(self._task, total=total, completed=total)


@contextmanager
def terminal_bar(stream: TextIO = sys.stderr) -> Iterator[Bar | None]:
    """A Bar on `stream` if it is a terminal, else None (the caller reports nothing but its result)."""
    if not stream.isatty():
        yield None
        return
    bar = Bar(stream)
    bar._progress.start()
    try:
        yield bar
        bar._end_phase()
    finally:
        bar._progress.stop()
