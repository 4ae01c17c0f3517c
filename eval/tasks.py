"""Sentence tasks with a known gold answer, shared by the benchmark and (later) the eval suite."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from distill.errors import DistillError

Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, dim) unit vectors


def read_sts(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """Sentence pairs and gold scores from a tab-separated file.

    A line is either `sentence<TAB>sentence<TAB>score` or the STS Benchmark layout
    (genre, file, year, id, score, sentence, sentence).
    """
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"STS file {str(path)!r} does not exist")
    first, second, gold = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        cells = line.split("\t")
        a, b, score = (cells[5], cells[6], cells[4]) if len(cells) >= 7 else [*cells, "", ""][:3]
        try:
            gold.append(float(score))
        except ValueError as e:
            raise DistillError(
                f"{path.name} line {number}: expected 'sentence<TAB>sentence<TAB>score', got {line[:80]!r}"
            ) from e
        first.append(a)
        second.append(b)
    if len(gold) < 2:
        raise DistillError(f"STS file {str(path)!r} has fewer than two scored pairs")
    return first, second, np.array(gold)


def sts_spearman(encode: Encode, first: Sequence[str], second: Sequence[str], gold: np.ndarray) -> float:
    """Spearman correlation x 100 between gold scores and the cosine of each pair's vectors."""
    a, b = encode(first), encode(second)
    return float(100 * spearmanr((a * b).sum(axis=1), gold).statistic)
