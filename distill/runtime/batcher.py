"""The batcher of `distill serve`: concurrent requests joined into few model calls on a worker thread.

One background task takes the pending requests, joins their texts into one model call (up to
`batch_size` texts), runs it in a worker thread so the event loop keeps accepting requests, and hands
each request its own rows. Requests that arrive while a call runs form the next batch, so batches grow
with load and a lone request never waits. At shutdown it answers everything queued, then stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from distill.runtime.guards import ApiError
from distill.runtime.stats import BatchStats, Histogram

logger = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # texts per model call


def _shutting_down() -> ApiError:
    return ApiError(503, "the server is shutting down", kind="server_error")


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future[tuple[np.ndarray, int]]


class Batcher:
    """Joins concurrent requests into few `work(texts) -> (vectors, token counts)` calls on a worker thread."""

    def __init__(
        self, work: Callable[[list[str]], tuple[np.ndarray, list[int]]], *, batch_size: int = 64,
        max_wait_ms: float = 0.0,
    ) -> None:  # fmt: skip
        self.work, self.batch_size, self.max_wait_ms = work, batch_size, max_wait_ms
        self.stats = BatchStats()
        self.batch_sizes = Histogram(BATCH_BUCKETS)  # texts per model call
        self._pending: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._arrived = asyncio.Event()  # NOTE: a fresh one per loop: an Event binds to the first loop it waits on
        self._closing = False
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="embedding-batcher")

    async def stop(self, timeout: float | None = None) -> None:
        """Refuse new requests, answer every one already submitted, then stop the worker.

        Requests still unanswered after `timeout` seconds (None: no limit) get a 503, never silence.
        """
        self._closing = True
        self._arrived.set()  # wake an idle worker: with nothing pending it ends
        if self._worker is not None:
            try:
                await asyncio.wait_for(self._worker, timeout)  # NOTE: on timeout, wait_for cancels the worker
            except asyncio.TimeoutError:
                logger.warning("requests still queued %.0f s after shutdown began get a 503", timeout)
        _fail(list(self._pending), _shutting_down())
        self._pending.clear()

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def submit(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """(len(texts), dim) vectors and their total token count, once the worker has run their batch."""
        if self._closing:
            raise _shutting_down()
        if not self.running:  # NOTE: without the worker (an app run without its lifespan) it would wait forever
            raise ApiError(503, "the embedding worker is not running", kind="server_error")
        future: asyncio.Future[tuple[np.ndarray, int]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(texts, future))
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        """The worker loop, until `stop` and nothing is left pending; a failed batch fails only its own requests."""
        while self._pending or not self._closing:
            if not await self._wait(None):
                continue
            batch = await self._gather()
            try:
                await self._process(batch)
            except asyncio.CancelledError:  # `stop` ran out of time while the model worked
                _fail(batch, _shutting_down())
                raise
            except Exception as e:
                logger.exception("embedding a batch of %d requests failed", len(batch))
                _fail(batch, e)

    async def _wait(self, timeout: float | None) -> bool:
        """Whether a request is pending, after waiting up to `timeout` seconds (None: until one comes or `stop`)."""
        self._arrived.clear()
        if self._pending or self._closing or (timeout is not None and timeout <= 0):
            return bool(self._pending)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout)
        return bool(self._pending)

    async def _gather(self) -> list[_Pending]:
        """Whole requests, oldest first, until `batch_size` texts or `max_wait_ms` after the first one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_ms / 1000
        batch: list[_Pending] = []
        count = 0
        while count < self.batch_size:
            if not self._pending and not await self._wait(deadline - loop.time()):
                break
            pending = self._pending.popleft()
            if not pending.future.cancelled():  # the client went away while it waited
                batch.append(pending)
                count += len(pending.texts)
        return batch

    async def _process(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        texts = [text for pending in batch for text in pending.texts]
        vectors, tokens = await asyncio.to_thread(self.work, texts)  # (len(texts), dim)
        self.stats.requests += len(batch)
        self.stats.texts += len(texts)
        self.stats.tokens += sum(tokens)
        self.stats.encode_calls += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(texts))
        self.batch_sizes.observe(len(texts))
        start = 0
        for pending in batch:
            stop = start + len(pending.texts)
            if not pending.future.done():
                pending.future.set_result((vectors[start:stop], sum(tokens[start:stop])))
            start = stop


def _fail(batch: list[_Pending], error: Exception) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)
