"""Every task scored for the teacher and every model, each score also as a share of the teacher's.

    section = score_tasks(tasks, encoders)  # encoders[0] is the teacher
    section["rows"]        # [{"task", "kind", "metric", "scores": {model: x}, "shares": {model: x / teacher}}]
    section["mean_share"]  # {model: the mean of its shares of each task's main metric}

The teacher is the reference: its own share is 1 on every row. In retrieval it also searches its own
index for the `..._teacher_index` rows, where every other model in its space sends its queries to
the teacher's document vectors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from distill.cards import INDEX_SUFFIX  # NOTE: the model cards read these rows, a floor below
from eval.encoders import TaskEncoder
from eval.suite import Task

logger = logging.getLogger(__name__)


def score_tasks(tasks: Sequence[Task], encoders: Sequence[TaskEncoder], *, progress: bool = False,
                teacher_index: bool = False) -> dict[str, Any]:  # fmt: skip
    """The results section of report.json (and of summary.json): every task's scores, by model, with shares.

    With `teacher_index` (students trained to search an index the teacher built), a retrieval task's rows against
    the teacher's index come first and are the ones its mean share counts.
    """
    teacher = encoders[0]
    scores: dict[str, dict[str, dict[str, float | None]]] = {}  # model -> task -> metric -> score
    seconds: dict[str, float] = {}
    with tqdm(total=len(tasks) * len(encoders), desc="tasks", unit="score", disable=not progress) as bar:
        for encoder in encoders:
            scores[encoder.name] = {}
            for task in tasks:
                started = time.perf_counter()
                scores[encoder.name][task.name] = score_one(task, encoder, teacher)
                seconds[task.name] = seconds.get(task.name, 0.0) + time.perf_counter() - started
                logger.info("%s on %s: %s", encoder.name, task.name, _brief(scores[encoder.name][task.name]))
                bar.update()
    return results_section(tasks, scores, teacher.name, seconds, teacher_index=teacher_index)


def score_one(task: Task, encoder: TaskEncoder, teacher: TaskEncoder) -> dict[str, float | None]:
    """One task's metrics for one model; retrieval also against the teacher's index (the teacher's own: itself).

    An undefined score (Spearman of vectors that are all alike) is None, not NaN, which JSON cannot hold.
    """
    if task.kind != "retrieval":
        scores = task.evaluator(encoder)
    elif encoder is teacher:
        own = task.evaluator(encoder)
        scores = {**own, **{f"{name}{INDEX_SUFFIX}": value for name, value in own.items()}}
    else:
        scores = task.evaluator(encoder, index=teacher)
    return {name: float(value) if np.isfinite(value) else None for name, value in scores.items()}


def results_section(
    tasks: Sequence[Task],
    scores: dict[str, dict[str, dict[str, float | None]]],
    teacher: str,
    seconds: dict[str, float] | None = None,
    *,
    teacher_index: bool = False,
) -> dict[str, Any]:
    """Rows of (task, metric) with each model's score and share of the teacher's, and each model's mean share
    (`teacher_index`: see `score_tasks`)."""
    models = list(scores)
    rows = []
    for task in tasks:
        metrics = list(dict.fromkeys(m for model in models for m in scores[model].get(task.name, {})))
        main = task.main + INDEX_SUFFIX if teacher_index and task.main + INDEX_SUFFIX in metrics else task.main
        for metric in sorted(metrics, key=lambda m: (m.endswith(INDEX_SUFFIX) != teacher_index, metrics.index(m))):
            row_scores = {model: scores[model].get(task.name, {}).get(metric) for model in models}
            rows.append({"task": task.name, "kind": task.kind, "metric": metric, "main": metric == main,
                         "scores": row_scores, "shares": shares(row_scores, teacher)})  # fmt: skip
    main = [row for row in rows if row["main"]]
    mean_share = {model: _mean([row["shares"][model] for row in main]) for model in models}
    return {"tasks": [task.describe() for task in tasks], "teacher": teacher, "models": models, "rows": rows,
            "mean_share": mean_share, "seconds": {k: round(v, 2) for k, v in (seconds or {}).items()}}  # fmt: skip


def shares(row: dict[str, float | None], teacher: str) -> dict[str, float | None]:
    """Each score over the teacher's; None where either is missing or the teacher's is not positive."""
    reference = row.get(teacher)
    return {model: None if value is None or reference is None or reference <= 0 else value / reference
            for model, value in row.items()}  # fmt: skip


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known and len(known) == len(values) else None


def _brief(metrics: dict[str, float | None]) -> str:
    return ", ".join(f"{name} {value if value is None else round(value, 2)}" for name, value in metrics.items()
                     if not name.endswith(INDEX_SUFFIX))  # fmt: skip
