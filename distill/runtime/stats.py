"""The counters `distill serve` keeps: the batcher writes them, `/metrics` (metrics.py) and `/health` read them."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass


class Histogram:
    """A Prometheus histogram: how many observations fell at or under each bound, and their sum."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds, self.counts, self.sum = tuple(bounds), [0] * (len(bounds) + 1), 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def lines(self, name: str) -> list[str]:
        cumulative = list(itertools.accumulate(self.counts))
        les = [f"{bound:g}" for bound in self.bounds] + ["+Inf"]
        buckets = [f'{name}_bucket{{le="{le}"}} {n}' for le, n in zip(les, cumulative, strict=True)]
        return [*buckets, f"{name}_sum {self.sum}", f"{name}_count {cumulative[-1]}"]


@dataclass
class BatchStats:
    """Counters of the batching worker: `encode_calls` < `requests` means requests were served together."""

    requests: int = 0
    texts: int = 0
    tokens: int = 0
    encode_calls: int = 0
    largest_batch: int = 0  # the most texts one encode call took
    retried_batches: int = 0  # model calls that failed with several requests in them and were run again one by one
