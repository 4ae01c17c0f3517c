"""`OnnxClassifier`: labels from an export with a classification head (`distill head export`), no torch.

The folder is an export (see `distill.runtime.embedder`) whose graphs end in the head: beside
`sentence_vectors` they give `probabilities` (batch, classes), and `head.json` names the labels in
the order of their columns:

    from distill.runtime import OnnxClassifier

    classifier = OnnxClassifier("exports/topic", threads=4)
    classifier.predict(["a goal in the last minute"])  # ["sport"]
    classifier.predict_proba(["a goal in the last minute"])  # (1, classes) float32, rows sum to 1

It is an `OnnxEmbedder` too: `encode` gives the same vectors the head reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from distill.errors import DistillError
from distill.runtime.embedder import MODEL_FILES, OUTPUT_NAME, OnnxEmbedder

HEAD_FILE = "head.json"
PROBABILITIES = "probabilities"  # the head's output, (batch, classes)


class OnnxClassifier(OnnxEmbedder):
    """Label probabilities and sentence vectors from an export with a head, on onnxruntime's CPU provider."""

    def __init__(self, path: str | Path, *, precision: str = "fp32", threads: int | None = None) -> None:
        """As `OnnxEmbedder`; the folder must hold a head (`head.json` and a graph with `probabilities`)."""
        path = Path(path)
        if not (path / HEAD_FILE).is_file():
            raise DistillError(f"{str(path)!r} holds no classification head (no {HEAD_FILE}): export one with "
                               "`distill head export`")  # fmt: skip
        super().__init__(path, precision=precision, threads=threads)
        try:
            head = json.loads((path / HEAD_FILE).read_text(encoding="utf-8"))
            self.labels: list[str] = [str(x) for x in head["config"]["labels"]]  # the probabilities' columns
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DistillError(f"{str(path / HEAD_FILE)!r} is not a valid head config ({e})") from e
        if self.widths.get(PROBABILITIES) != len(self.labels):
            raise DistillError(f"{str(path / MODEL_FILES[precision])!r} has no {PROBABILITIES!r} output of "
                               f"{len(self.labels)} classes for the labels of {HEAD_FILE}; export it again with "
                               "`distill head export`")  # fmt: skip

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(len(texts), classes) float32 probabilities, each row summing to 1, columns in the order of `labels`."""
        if isinstance(texts, str):
            raise TypeError("predict_proba takes a list of texts; wrap a single text in a list")
        return self.predict_proba_ids(self.token_ids(texts), batch_size)

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[str]:
        """The most probable label of each text."""
        return [self.labels[i] for i in self.predict_proba(texts, batch_size).argmax(axis=1)]

    def predict_proba_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 32) -> np.ndarray:
        """`predict_proba` for texts already tokenized by `token_ids`."""
        return self.outputs_ids(ids, [PROBABILITIES], batch_size)[0]

    def encode_and_classify_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 32) -> np.ndarray:
        """(len(ids), dim + classes): each text's sentence vector, then its probabilities, from one model call."""
        return np.hstack(self.outputs_ids(ids, [OUTPUT_NAME, PROBABILITIES], batch_size))
