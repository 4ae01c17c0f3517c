"""STS as a task: Spearman x 100 between gold similarity scores and the cosine of each pair's vectors.

A .tsv file is read as `eval.tasks.read_sts` reads it (sentence, sentence, score a line, or the STS
Benchmark layout); a .csv, .jsonl or .parquet file needs `sentence1`, `sentence2` and `score` columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distill.errors import DistillError
from distill.heads.data import read_table
from eval.encoders import Encode, TaskEncoder, as_encoder
from eval.tasks import read_sts, sts_spearman

COLUMNS = ("sentence1", "sentence2", "score")


class SentencePairsEvaluator:
    """`__call__(encoder) -> {spearman}` x 100 on pairs of sentences with gold scores."""

    def __init__(self, first: list[str], second: list[str], gold: np.ndarray) -> None:
        if len(first) < 2 or not len(first) == len(second) == len(gold):
            raise DistillError("an STS task needs at least two pairs of sentences, each with a score")
        self.first, self.second, self.gold = first, second, np.asarray(gold, dtype=np.float64)

    @property
    def size(self) -> dict[str, int]:
        return {"pairs": len(self.gold)}

    def __call__(self, model: TaskEncoder | Encode) -> dict[str, float]:
        return {"spearman": sts_spearman(as_encoder(model).encode, self.first, self.second, self.gold)}


def read_pairs(path: str | Path) -> SentencePairsEvaluator:
    """An STS file: .tsv as `read_sts` reads it, or a table with sentence1, sentence2 and score columns."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".jsonl", ".parquet"):
        return SentencePairsEvaluator(*read_sts(path))
    frame = read_table(path, columns=COLUMNS)
    try:
        gold = frame["score"].astype(float).to_numpy()
    except (TypeError, ValueError) as e:
        raise DistillError(f"{str(path)!r}: the score column must hold numbers ({e})") from e
    return SentencePairsEvaluator([str(t) for t in frame["sentence1"]], [str(t) for t in frame["sentence2"]], gold)
