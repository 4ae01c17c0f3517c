"""Classification: the project's logistic-regression head trained on a model's frozen vectors, scored on test texts.

The head is `distill.heads.classifier`'s linear head (L2 logistic regression solved by L-BFGS, its C
chosen by 5-fold cross-validation on the training texts, classes weighted alike), the same recipe
`distill head train` ships, so a task score here is what a user's own head would score:

    evaluator = ClassificationEvaluator(read_labelled("train.csv"), read_labelled("test.csv"))
    evaluator(encode)  # {"accuracy": ..., "macro_f1": ...}, x 100
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from distill.errors import DistillError
from distill.heads.classifier import score_head, train_classifier
from distill.heads.data import read_labelled
from distill.heads.head import HeadTrainConfig
from eval.encoders import Encode, TaskEncoder, as_encoder
from eval.fidelity import unit

TABLE_SUFFIXES = (".csv", ".jsonl", ".parquet")


class ClassificationEvaluator:
    """`__call__(encoder) -> {accuracy, macro_f1}` x 100 of a head trained on the training texts' vectors."""

    def __init__(self, train: tuple[Sequence[str], Sequence[str]], test: tuple[Sequence[str], Sequence[str]],
                 config: HeadTrainConfig | None = None) -> None:  # fmt: skip
        (self.train_texts, self.train_labels), (self.test_texts, self.test_labels) = train, test
        if len(set(self.train_labels)) < 2:
            raise DistillError("a classification task needs at least 2 classes in its training texts")
        self.config = config or HeadTrainConfig()

    @property
    def size(self) -> dict[str, int]:
        return {"train": len(self.train_texts), "test": len(self.test_texts), "classes": len(set(self.train_labels))}

    def __call__(self, model: TaskEncoder | Encode) -> dict[str, float]:
        encoder = as_encoder(model)
        train, test = unit(encoder.encode(list(self.train_texts))), unit(encoder.encode(list(self.test_texts)))
        with _quiet("distill.heads.classifier"):
            head = train_classifier(train, list(self.train_labels), self.config, model=encoder.name)
            scores = score_head(head, test, list(self.test_labels))
        return {"accuracy": 100 * scores["accuracy"], "macro_f1": 100 * scores["macro_f1"]}


def read_split_folder(folder: str | Path) -> ClassificationEvaluator:
    """A folder with `train` and `test` files (.csv, .jsonl or .parquet) of `text` and `label` columns."""
    folder = Path(folder)
    files = {split: split_file(folder, split) for split in ("train", "test")}
    missing = [split for split, path in files.items() if path is None]
    if missing:
        kinds = ", ".join(s.lstrip(".") for s in TABLE_SUFFIXES)
        raise DistillError(f"classification folder {str(folder)!r} has no {' or '.join(missing)} file ({kinds}, "
                           "with text and label columns)")  # fmt: skip
    return ClassificationEvaluator(read_labelled(files["train"]), read_labelled(files["test"]))  # type: ignore[arg-type]


def split_file(folder: Path, split: str) -> Path | None:
    """`folder/split.csv` (or .jsonl, .parquet) where there is one."""
    return next((folder / f"{split}{suffix}" for suffix in TABLE_SUFFIXES if (folder / f"{split}{suffix}").is_file()),
                None)  # fmt: skip


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """A logger at WARNING for a while. NOTE: the head logs each C it tries; a task fits one per model and backend."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)
