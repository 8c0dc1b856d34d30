"""The readers' scans handed to the decision loop, in order, on the loop's thread.

A deque and the one waiter's future: every scan passes here before its decision, and asyncio.Queue spends
several calls more per item (getters and putters kept in deques of their own, a wake-up of the next putter).
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    """One consumer (the decision loop), producers on the same loop; `put` refuses beyond `maxsize`."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.items: deque[T] = deque()
        self._waiter: asyncio.Future | None = None

    def put(self, item: T) -> bool:
        """False when full (the caller says the scan was dropped)."""
        if len(self.items) >= self.maxsize:
            return False
        self.items.append(item)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        return True

    async def get(self) -> T:
        while not self.items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.items.popleft()
