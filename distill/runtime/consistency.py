"""How much a text's vector depends on what it is embedded with: `distill export` refuses a graph where it does,
and the reliability benchmark (`eval.experiments.reliability`) holds the service to the same.

A text must get the same vector alone, in a batch of texts of about its length (as `OnnxEmbedder.encode`
batches), in a batch of texts of any length in any order, and, for a padded graph, with more padding than
it needs. onnxruntime's dynamic int8 failed this by up to 0.04 (one activation scale for the whole batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from distill.runtime.embedder import INPUT_NAMES, OUTPUT_NAME, OnnxEmbedder

EXTRA_PADDING = 16  # tokens of padding past a text's end in the padding check
MIXED_BATCH = 8  # texts per batch in the mixed check


def batch_dependence(embedder: OnnxEmbedder, texts: Sequence[str], *, batch_size: int = 32) -> dict[str, float]:
    """The max absolute difference of each text's vector alone to the same text's vector in three settings:
    `by_length` (batches as `encode` makes them), `mixed` (batches of texts of any length, shuffled) and, for a
    padded graph, `extra_padding` (alone, with `EXTRA_PADDING` more padding tokens)."""
    ids = embedder.token_ids(texts)
    alone = np.vstack([_run(embedder, [x]) for x in ids])  # (n, dim)
    mixed = np.empty_like(alone)
    order = np.random.default_rng(0).permutation(len(ids))
    for start in range(0, len(order), MIXED_BATCH):
        index = order[start : start + MIXED_BATCH]
        mixed[index] = _run(embedder, [ids[i] for i in index])
    result = {"by_length": _difference(alone, embedder.encode_ids(ids, batch_size)),
              "mixed": _difference(alone, mixed)}  # fmt: skip
    if embedder.config.inputs == "padded":
        padded = np.vstack([_run(embedder, [x], EXTRA_PADDING) for x in ids])
        result["extra_padding"] = _difference(alone, padded)
    return result


def _run(embedder: OnnxEmbedder, ids: Sequence[Sequence[int]], extra_padding: int = 0) -> np.ndarray:
    """One session run on `ids` as one batch, with `extra_padding` more padding columns (a padded graph)."""
    feeds = embedder.feeds(ids)
    if extra_padding:
        feeds = {name: np.pad(feeds[name], ((0, 0), (0, extra_padding))) for name in INPUT_NAMES}
    return embedder.session.run([OUTPUT_NAME], feeds)[0]


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max()) if a.size else 0.0
