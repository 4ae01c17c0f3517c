"""`distill head compare`: the same head trained on the teacher and on each student, side by side.

Every model embeds the same training and test texts; a head is trained on each model's training
vectors with the same recipe and seed, then scored on the test texts. The table says what each
student keeps of the teacher's task score (accuracy and macro-F1, the difference in points) and how
fast it embeds the test texts, as a ratio to the teacher measured in the same process:

    rows = compare_heads({"teacher": "sentence-transformers/all-MiniLM-L6-v2",
                          "static": "runs/default/students/static"}, train, test)
    print(markdown_table(rows))
"""

from __future__ import annotations

import functools
import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.heads import Encode, HeadTrainConfig, encoder_for, evaluate_head, train_classifier
from distill.io import read_json

logger = logging.getLogger(__name__)

TEACHER = "teacher"
SPEED_BATCH = 32  # texts per call when timing, as `make eval`'s batch-32 column
SPEED_TEXTS = 1000  # the test texts timed (the first ones), enough for a stable rate
SPEED_ROUNDS = 7


@dataclass
class Labelled:
    texts: list[str]
    labels: list[str]


@dataclass
class CompareRow:
    """One model's head, scored on the test texts."""

    name: str
    model: str  # the folder or hub name it was loaded from
    encoder: str  # what it is: a student, an export, a teacher
    accuracy: float
    macro_f1: float
    texts_per_s: float  # embedding the test texts, batch `SPEED_BATCH`
    embed_seconds: float  # embedding the training and test texts once
    train_seconds: float  # training the head on the vectors
    kept_accuracy: float | None = None  # points: accuracy minus the teacher's (None without a teacher row)
    kept_macro_f1: float | None = None
    speedup: float | None = None  # texts/s over the teacher's


def resolve_models(names: Sequence[str], run_dir: str | Path) -> dict[str, str]:
    """Each name's model: an existing path as it is, "teacher" the run's teacher, a bare name the run's student
    of that name, anything else a hub name."""
    summary: dict[str, Any] = {}

    def run_summary() -> dict[str, Any]:
        if not summary:
            summary_file = Path(run_dir) / "summary.json"
            if not summary_file.is_file():
                raise DistillError(f"{str(run_dir)!r} is not a finished run (no summary.json), so it cannot say what "
                                   f"{name!r} is: pass --run RUN_DIR, or model folders")  # fmt: skip
            summary.update(read_json(summary_file))
        return summary

    models = {}
    for name in names:
        if Path(name).exists():
            models[name] = name
        elif name == TEACHER:
            models[name] = run_summary()["teacher"]
        elif "/" not in name:
            students = {s["name"]: s["path"] for s in run_summary()["students"]}
            if name not in students:
                raise DistillError(f"{str(run_dir)!r} has no student {name!r} (it has {', '.join(sorted(students))}); "
                                   "pass other models by folder or full hub name")  # fmt: skip
            models[name] = students[name]
        else:
            models[name] = name
    if len(models) != len(names):
        raise DistillError(f"--models names a model twice: {', '.join(names)}")
    return models


def compare_heads(
    models: dict[str, str], train: Labelled, test: Labelled, config: HeadTrainConfig | None = None, *,
    heads_dir: str | Path | None = None, teacher: str = TEACHER,
) -> list[CompareRow]:  # fmt: skip
    """Train and score a head on each model's vectors; rows in the order of `models`, relative to `teacher`'s row."""
    config = config or HeadTrainConfig()
    rows, encoders = [], {}
    for name, model in models.items():
        encode, about = encoder_for(model)
        logger.info("%s: embedding %d + %d texts with %s", name, len(train.texts), len(test.texts), about)
        started = time.perf_counter()
        train_vectors, test_vectors = encode(train.texts), encode(test.texts)
        embedded = time.perf_counter() - started
        head = train_classifier(train_vectors, train.labels, config, model=model, encoder=about)
        trained = time.perf_counter() - started - embedded
        if heads_dir is not None:
            head.save(Path(heads_dir) / name)
        scores = evaluate_head(head, lambda _texts, v=test_vectors: v, test.texts, test.labels)
        rows.append(CompareRow(name=name, model=model, encoder=about, accuracy=scores["accuracy"],
                               macro_f1=scores["macro_f1"], texts_per_s=float("nan"),
                               embed_seconds=round(embedded, 2), train_seconds=round(trained, 2)))  # fmt: skip
        encoders[name] = encode
        logger.info("%s: accuracy %.4f, macro-F1 %.4f", name, rows[-1].accuracy, rows[-1].macro_f1)
    for row, speed in zip(rows, speeds(encoders, test.texts).values(), strict=True):
        row.texts_per_s = speed
    reference = next((row for row in rows if row.name == teacher), None)
    if reference is not None:
        for row in rows:
            row.kept_accuracy = 100 * (row.accuracy - reference.accuracy)
            row.kept_macro_f1 = 100 * (row.macro_f1 - reference.macro_f1)
            row.speedup = row.texts_per_s / reference.texts_per_s
    return rows


def speeds(encoders: dict[str, Encode], texts: Sequence[str], rounds: int = SPEED_ROUNDS) -> dict[str, float]:
    """Texts/s of each encoder on the first `SPEED_TEXTS` texts in batches of `SPEED_BATCH`, tokenizing included.

    NOTE: every round times each model once, in a new random order, and each model's median round
    counts: a shared machine's slow moments then fall on all models alike, as in `make eval`.
    """
    from eval.latency import alternate

    texts = list(texts[:SPEED_TEXTS])
    runs = {name: functools.partial(encode, texts, SPEED_BATCH) for name, encode in encoders.items()}
    logger.info("timing %d models on %d texts, %d rounds", len(runs), len(texts), rounds)
    return {name: len(texts) / statistics.median(seconds) for name, seconds in alternate(runs, rounds).items()}


def as_json(rows: Sequence[CompareRow], **about: Any) -> dict[str, Any]:
    return {**about, "rows": [asdict(row) for row in rows]}


def markdown_table(rows: Sequence[CompareRow]) -> str:
    """The side-by-side table: task scores, what each keeps of the teacher's (points), speed."""
    lines = ["| model | accuracy | macro-F1 | accuracy vs teacher | macro-F1 vs teacher | texts/s | x teacher |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        lines.append(f"| {row.name} | {100 * row.accuracy:.2f} | {100 * row.macro_f1:.2f} | "
                     f"{_points(row.kept_accuracy)} | {_points(row.kept_macro_f1)} | {row.texts_per_s:,.0f} | "
                     f"{'-' if row.speedup is None else f'{row.speedup:.2f}'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"
