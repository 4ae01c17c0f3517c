"""The batcher of `distill serve`: concurrent requests joined into few model calls on a worker thread.

Each request arrives tokenized (a bad text was refused with its request before it got here). One background
task takes the pending requests oldest first, joins their texts into one model call of at most `batch_size`
texts (a request larger than that is split over several calls), runs it in a worker thread so the event loop
keeps accepting requests, and hands each request its own rows. Requests that arrive while a call runs form
the next batch, so batches grow with load and a lone request never waits.

A model call that fails with several requests in it is run again request by request, so only a request that
fails on its own gets the error. At shutdown the batcher answers everything queued, then stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from distill.runtime.guards import ApiError, shutting_down
from distill.runtime.stats import BatchStats, Histogram

logger = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # texts per model call
Work = Callable[[list[Sequence[int]]], np.ndarray]  # token id lists -> (len(ids), width) rows


@dataclass
class _Pending:
    """A request's token ids, the rows of those embedded so far, and the future its handler awaits."""

    ids: list[Sequence[int]]
    future: asyncio.Future[np.ndarray]
    rows: list[np.ndarray | None] = field(default_factory=list)  # one entry per part, in order
    taken: int = 0  # texts handed to model calls so far
    done: int = 0  # texts embedded so far


@dataclass
class _Part:
    """The texts `start:stop` of one request, as one model call takes them."""

    pending: _Pending
    start: int
    stop: int
    index: int  # which of the request's parts

    @property
    def ids(self) -> list[Sequence[int]]:
        return self.pending.ids[self.start : self.stop]


class Batcher:
    """Joins concurrent requests into few `work(ids) -> rows` calls of at most `batch_size` texts on a worker thread."""

    def __init__(self, work: Work, *, batch_size: int = 64, max_wait_ms: float = 0.0) -> None:
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
        for pending in self._pending:
            _fail(pending, shutting_down())
        self._pending.clear()

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def submit(self, ids: list[Sequence[int]]) -> np.ndarray:
        """(len(ids), width) rows for the token id lists `ids`, once the worker has run their batches."""
        if self._closing:
            raise shutting_down()
        if not self.running:  # NOTE: without the worker (an app run without its lifespan) it would wait forever
            raise ApiError(503, "the embedding worker is not running", kind="server_error")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(list(ids), future))
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        """The worker loop, until `stop` and nothing is left pending."""
        while self._pending or not self._closing:
            if not await self._wait(None):
                continue
            parts = await self._gather()
            try:
                await self._process(parts)
            except asyncio.CancelledError:  # `stop` ran out of time while the model worked
                for part in parts:
                    _fail(part.pending, shutting_down())
                raise

    async def _wait(self, timeout: float | None) -> bool:
        """Whether a request is pending, after waiting up to `timeout` seconds (None: until one comes or `stop`)."""
        self._arrived.clear()
        if self._pending or self._closing or (timeout is not None and timeout <= 0):
            return bool(self._pending)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout)
        return bool(self._pending)

    async def _gather(self) -> list[_Part]:
        """Texts of the oldest requests, up to `batch_size` of them or until `max_wait_ms` after the first.

        A request that does not fit whole gives the batch what fits; the rest of it starts the next batch.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_ms / 1000
        parts: list[_Part] = []
        count = 0
        while count < self.batch_size:
            if not self._pending and not await self._wait(deadline - loop.time()):
                break
            pending = self._pending[0]
            if pending.future.done():  # the client went away while it waited, or an earlier part failed
                self._pending.popleft()
                continue
            take = min(self.batch_size - count, len(pending.ids) - pending.taken)
            parts.append(_Part(pending, pending.taken, pending.taken + take, len(pending.rows)))
            pending.rows.append(None)
            pending.taken += take
            count += take
            if pending.taken == len(pending.ids):
                self._pending.popleft()
        return parts

    async def _process(self, parts: list[_Part]) -> None:
        """One model call for `parts`; if it fails and holds several requests, one call per request."""
        if not parts:
            return
        try:
            rows = await self._call([x for part in parts for x in part.ids])
        except Exception as e:
            if len({id(part.pending) for part in parts}) == 1:
                logger.error("a model call of %d texts failed: %s", sum(p.stop - p.start for p in parts), e)
                for part in parts:
                    _fail(part.pending, e)
                return
            self.stats.retried_batches += 1
            logger.warning("a model call of %d requests failed (%s); running them one by one", len(parts), e)
            for part in parts:
                await self._process([part])
            return
        start = 0
        for part in parts:
            stop = start + part.stop - part.start
            self._deliver(part, rows[start:stop])
            start = stop

    async def _call(self, ids: list[Sequence[int]]) -> np.ndarray:
        rows = await asyncio.to_thread(self.work, ids)  # (len(ids), width)
        self.stats.texts += len(ids)
        self.stats.tokens += sum(len(x) for x in ids)
        self.stats.encode_calls += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(ids))
        self.batch_sizes.observe(len(ids))
        return rows

    def _deliver(self, part: _Part, rows: np.ndarray) -> None:
        pending = part.pending
        if pending.future.done():
            return
        pending.rows[part.index] = rows
        pending.done += len(rows)
        if pending.done == len(pending.ids):
            self.stats.requests += 1
            pending.future.set_result(pending.rows[0] if len(pending.rows) == 1 else np.vstack(pending.rows))


def _fail(pending: _Pending, error: BaseException) -> None:
    if not pending.future.done():
        pending.future.set_exception(error)
