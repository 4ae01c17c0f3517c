"""Latency and throughput of an encoder, measured the same way for the teacher and every model.

The caller runs every measurement in one process with one thread count (torch's and
onnxruntime's), so speeds can be compared as ratios to the teacher measured beside them:
absolute times drift on a shared machine, ratios much less.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from distill.runtime import OnnxEmbedder

BatchEncode = Callable[[Sequence[str], int], np.ndarray]  # (texts, batch_size) -> (n, dim)
BATCH_SIZES = (32, 128)


def measure(
    encode: BatchEncode, texts: Sequence[str], *, singles: int = 100, repeats: int = 3, min_seconds: float = 1.0
) -> dict[str, float]:
    """Single-text p50/p95 in ms, and texts/s at each of `BATCH_SIZES` over `texts`, after a warm-up call.

    NOTE: a fast student encodes 1,000 texts in a tenth of a second, where scheduler noise on a
    shared machine is large. So every measurement goes on until it has taken `min_seconds`: at
    least `singles` single texts (cycling through `texts`) and at least `repeats` passes over
    `texts`, whose median counts.
    """
    out: dict[str, float] = {}
    encode(texts[:8], 1)
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < singles or (time.perf_counter() - began < min_seconds and len(times) < 50 * singles):
        text = texts[len(times) % len(texts)]
        start = time.perf_counter()
        encode([text], 1)
        times.append(1000 * (time.perf_counter() - start))
    out["single_p50_ms"] = float(np.percentile(times, 50))
    out["single_p95_ms"] = float(np.percentile(times, 95))
    for batch_size in BATCH_SIZES:
        encode(texts[:batch_size], batch_size)
        run = partial(encode, texts, batch_size)
        out[f"batch{batch_size}_texts_per_s"] = texts_per_s(run, len(texts), repeats=repeats, min_seconds=min_seconds)
    return out


def tokenizer_throughput(
    embedder: OnnxEmbedder, texts: Sequence[str], *, repeats: int = 3, min_seconds: float = 1.0
) -> float:
    """Texts/s of the runtime's tokenizer call alone on `texts` (`OnnxEmbedder.encodings`, as `encode` makes it).

    Every `encode` starts with that call, so this is the limit of the export's throughput on the
    same texts: a static student's lookup is close to it. Timed as `measure` times a batch size.
    """
    embedder.encodings(texts[:8])
    return texts_per_s(partial(embedder.encodings, texts), len(texts), repeats=repeats, min_seconds=min_seconds)


def texts_per_s(run: Callable[[], Any], texts: int, *, repeats: int = 3, min_seconds: float = 1.0) -> float:
    """`texts` over the median time of a call to `run`, called at least `repeats` times and `min_seconds` long."""
    passes: list[float] = []
    while len(passes) < repeats or sum(passes) < min_seconds:
        start = time.perf_counter()
        run()
        passes.append(time.perf_counter() - start)
    return texts / statistics.median(passes)


def ratios(latency: dict[str, float], teacher: dict[str, float]) -> dict[str, float]:
    """Speed-ups over the teacher (above 1: faster): throughput ratios, and the inverse ratio of latencies."""
    out = {key.replace("_texts_per_s", "_speedup"): value / teacher[key]
           for key, value in latency.items() if key.endswith("_texts_per_s")}  # fmt: skip
    for key in ("single_p50_ms", "single_p95_ms"):
        out[key.replace("_ms", "_speedup")] = teacher[key] / latency[key]
    return out


def with_ratios(latency: dict[str, dict[str, float]], teacher: dict[str, float]) -> dict[str, Any]:
    """Each backend's figures (torch, onnx_fp32, ...) with its speed-ups over the teacher added."""
    return {backend: {**figures, "speedup": ratios(figures, teacher)} for backend, figures in latency.items()}


def alternate(
    runs: dict[str, Callable[[], Any]], rounds: int, skip_after: dict[str, int] | None = None
) -> dict[str, list[float]]:
    """Seconds of each call in `rounds` rounds, every round in a new random order (a run in `skip_after` stops after
    that many rounds), so that a shared machine's slow moments fall on all of them alike."""
    for run in runs.values():
        run()  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    order = random.Random(0)
    for round_ in range(rounds):
        for name in order.sample(list(runs), len(runs)):
            if round_ < (skip_after or {}).get(name, rounds):
                started = time.perf_counter()
                runs[name]()
                seconds[name].append(time.perf_counter() - started)
    return seconds
