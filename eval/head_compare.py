"""`distill head compare`: the same head trained on the teacher and on each student, side by side.

Every model embeds the same training and test texts; a head is trained on each model's training
vectors with the same recipe and seed, then scored on the test texts. The table says what each
student keeps of the teacher's task score (accuracy and macro-F1, the difference in points) and how
fast it embeds the test texts, as a ratio to the teacher measured in the same process. The tokens
task compares taggers the same way, by entity F1, on the models that have token vectors in context:

    rows = compare_heads({"teacher": "sentence-transformers/all-MiniLM-L6-v2",
                          "static": "runs/default/students/static"}, train, test)
    print(markdown_table(rows))
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.heads.classifier import score_head, train_classifier
from distill.heads.data import encoder_for, with_progress
from distill.heads.head import HeadTrainConfig
from distill.heads.tagging import score_tagger, student_token_encoder, token_encoder_for, train_tagger
from distill.heads.tune_config import TuneConfig
from distill.runfolder import is_run, read_summary

logger = logging.getLogger(__name__)

TEACHER = "teacher"
SPEED_BATCH = 32  # texts per call when timing, as `make eval`'s batch-32 column
SPEED_TEXTS = 1000  # the test texts timed (the first ones), enough for a stable rate
SPEED_ROUNDS = 7


@dataclass
class Labelled:
    """Texts and their labels (classify), or sentences as word lists and their tags (tokens)."""

    texts: list[Any]
    labels: list[Any]


METRICS = {"classify": ("accuracy", "macro_f1"), "tokens": ("entity_f1", "accuracy")}  # a task's scores, main first
TITLES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "entity_f1": "entity F1"}  # their table headings


@dataclass
class CompareRow:
    """One model's head, scored on the test texts."""

    name: str
    model: str  # the folder or hub name it was loaded from
    encoder: str  # what it is: a student, an export, a teacher
    scores: dict[str, float]  # the task's METRICS on the test texts, 0 to 1
    texts_per_s: float  # embedding the test texts (sentences), batch `SPEED_BATCH`
    embed_seconds: float  # embedding the training and test texts once
    train_seconds: float  # training the head on the vectors
    kept: dict[str, float] | None = None  # points: each score minus the teacher's (None without a teacher row)
    speedup: float | None = None  # texts/s over the teacher's
    tune: str = "none"  # what of the model trained with the head (`distill.heads.tuning`); none: frozen
    model_bytes: int = 0  # the model's weight files (a tuned model has the same size)


def resolve_models(names: Sequence[str], run_dir: str | Path) -> dict[str, str]:
    """Each name's model: an existing path as it is, "teacher" the run's teacher, a bare name the run's student
    of that name, anything else a hub name."""
    summary: dict[str, Any] = {}

    def run_summary() -> dict[str, Any]:
        if not summary:
            if not is_run(run_dir):
                raise DistillError(f"{str(run_dir)!r} is not a finished run (no summary.json), so it cannot say what "
                                   f"{name!r} is: pass --run RUN_DIR, or model folders")  # fmt: skip
            summary.update(read_summary(run_dir))
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
    task: str = "classify", heads_dir: str | Path | None = None, teacher: str = TEACHER, precision: str = "fp32",
    tunes: Sequence[str] = ("none",), tuning: TuneConfig | None = None,
) -> list[CompareRow]:  # fmt: skip
    """Train and score a `task` head on each model's vectors; rows in the order of `models`, relative to `teacher`'s.

    `precision` picks the graph of the models that are export folders (fp32 or int8). Each of `tunes` but
    "none" adds a row per model whose head was trained together with the model (`tuning`'s settings, its
    `tune` replaced); a model that setting cannot tune (an export, a static student's `last`) is left out of it.
    """
    if task not in METRICS:
        raise DistillError(f"unknown head task {task!r}; choose from: {', '.join(METRICS)}")
    config = config or HeadTrainConfig()
    rows: list[CompareRow] = []
    timed: dict[str, Callable[[], Any]] = {}
    for name, model in models.items():
        if "none" in tunes:
            rows.append(_frozen_row(name, model, train, test, config, task, heads_dir, precision, timed))
        for tune in [t for t in tunes if t != "none"]:
            row = tuned_row(name, model, train, test, dataclasses.replace(tuning or TuneConfig(), tune=tune,
                            head=config), heads_dir, timed, task=task)  # fmt: skip
            rows.extend([row] if row is not None else [])
    texts = min(len(test.texts), SPEED_TEXTS)
    speed = speeds(timed, texts)
    sizes = {model: weight_bytes(model) for model in models.values()}
    for row in rows:
        row.texts_per_s, row.model_bytes = speed[row.name], sizes[row.model]
    reference = next((row for row in rows if row.name == teacher and row.tune == "none"), None)
    if reference is not None:
        for row in rows:
            row.kept = {k: 100 * (v - reference.scores[k]) for k, v in row.scores.items()}
            row.speedup = row.texts_per_s / reference.texts_per_s
    return rows


def _frozen_row(
    name: str, model: str, train: Labelled, test: Labelled, config: HeadTrainConfig, task: str,
    heads_dir: str | Path | None, precision: str, timed: dict[str, Callable[[], Any]],
) -> CompareRow:  # fmt: skip
    """A head on the frozen model's vectors, scored on `test`; its model's timing call is added to `timed`."""
    encode, about = token_encoder_for(model) if task == "tokens" else encoder_for(model, precision)
    logger.info("%s: embedding %d + %d texts with %s", name, len(train.texts), len(test.texts), about)
    started = time.perf_counter()
    embed = encode if task == "tokens" else with_progress(encode, name)  # NOTE: sentences, not chunked
    train_vectors, test_vectors = embed(train.texts), embed(test.texts)
    embedded = time.perf_counter() - started
    if task == "tokens":
        head = train_tagger(train_vectors, train.labels, config, model=model, encoder=about)
        scores = score_tagger(head, test_vectors, test.labels)
        timed[name] = functools.partial(encode, test.texts[:SPEED_TEXTS])  # batches of its own (32)
    else:
        head = train_classifier(train_vectors, train.labels, config, model=model, encoder=about)
        scores = score_head(head, test_vectors, test.labels)
        timed[name] = functools.partial(encode, test.texts[:SPEED_TEXTS], SPEED_BATCH)  # type: ignore[call-arg]
    trained = time.perf_counter() - started - embedded
    if heads_dir is not None:
        head.save(Path(heads_dir) / head_folder_name(name))
    row = CompareRow(
        name=name,
        model=model,
        encoder=about,
        scores={k: scores[k] for k in METRICS[task]},
        texts_per_s=float("nan"),
        embed_seconds=round(embedded, 2),
        train_seconds=round(trained, 2),
    )
    logger.info("%s: %s", name, ", ".join(f"{k} {v:.4f}" for k, v in row.scores.items()))
    return row


def tuned_row(
    name: str, model: str, train: Labelled, test: Labelled, tuning: TuneConfig, heads_dir: str | Path | None,
    timed: dict[str, Callable[[], Any]], *, task: str = "classify",
) -> CompareRow | None:  # fmt: skip
    """A head trained with the model (`tuning.tune`), scored on `test`; None when that setting cannot tune it."""
    from distill.heads.models import as_student, load_model
    from distill.heads.tuning import save_tuned, trainable, tune_classifier

    try:
        student = as_student(load_model(model), model)
        trainable(student, tuning.tune)
        if task == "tokens" and not hasattr(student, "forward_tokens"):
            raise DistillError(f"a {student.kind} student has no token vectors in context")
    except DistillError as e:
        logger.warning("%s: no --tune %s row: %s", name, tuning.tune, e)
        return None
    started = time.perf_counter()
    if task == "tokens":
        from distill.heads.tune_tagger import tune_tagger

        head = tune_tagger(student, train.texts, train.labels, tuning, model=model, encoder=f"{name}, tuned")
        encode: Callable[..., Any] = student_token_encoder(student)  # type: ignore[arg-type]
    else:
        head = tune_classifier(student, train.texts, train.labels, tuning, model=model, encoder=f"{name}, tuned")
        encode = student.encode
    trained = time.perf_counter() - started
    vectors = encode(test.texts)
    embedded = time.perf_counter() - started - trained
    scores = score_tagger(head, vectors, test.labels) if task == "tokens" else score_head(head, vectors, test.labels)
    if heads_dir is not None:
        save_tuned(head, student, Path(heads_dir) / head_folder_name(f"{name}-{tuning.tune}"))
    timing = (test.texts[:SPEED_TEXTS],) if task == "tokens" else (test.texts[:SPEED_TEXTS], SPEED_BATCH)
    timed.setdefault(name, functools.partial(encode, *timing))
    logger.info("%s, tuned (%s): %s", name, tuning.tune, ", ".join(f"{k} {scores[k]:.4f}" for k in METRICS[task]))
    return CompareRow(name=name, model=model, encoder=head.config.encoder, tune=tuning.tune,
                      scores={k: scores[k] for k in METRICS[task]}, texts_per_s=float("nan"),
                      embed_seconds=round(embedded, 2), train_seconds=round(trained, 2))  # fmt: skip


def weight_bytes(model: str) -> int:
    """Bytes of a model's weight files (`*.safetensors`, `model.onnx`) in its folder; 0 when it has no local one."""
    from distill.teacher.model import resolve_teacher

    try:
        folder = Path(resolve_teacher(model)) if not Path(model).is_dir() else Path(model)
    except DistillError:
        return 0
    files = [*folder.glob("*.safetensors"), *folder.glob("model.onnx")] if folder.is_dir() else []
    return sum(f.stat().st_size for f in files)


def head_folder_name(name: str) -> str:
    """A model's name as one folder name: "runs/a/export/static" -> "runs_a_export_static".

    NOTE: never the name as a path: an absolute one would replace `heads_dir`, and the head would overwrite
    the model's own folder.
    """
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "model"


def speeds(runs: dict[str, Callable[[], Any]], texts: int, rounds: int = SPEED_ROUNDS) -> dict[str, float]:
    """Texts/s of each run, a call that embeds `texts` texts (tokenizing included).

    NOTE: every round times each model once, in a new random order, and each model's median round
    counts: a shared machine's slow moments then fall on all models alike, as in `make eval`.
    """
    from eval.latency import alternate

    logger.info("timing %d models on %d texts, %d rounds", len(runs), texts, rounds)
    return {name: texts / statistics.median(seconds) for name, seconds in alternate(runs, rounds).items()}


def as_json(rows: Sequence[CompareRow], **about: Any) -> dict[str, Any]:
    return {**about, "rows": [asdict(row) for row in rows]}


def markdown_table(rows: Sequence[CompareRow]) -> str:
    """The side-by-side table: task scores (%), what each keeps of the teacher's (points), speed; with tuned rows
    also each row's tune setting, its training seconds and its model's size."""
    metrics = list(rows[0].scores) if rows else []
    titles = [TITLES[m] for m in metrics]
    tuned = any(row.tune != "none" for row in rows)
    extra = ["tune", "train s", "MB"] if tuned else []
    head = ["model", *extra[:1], *titles, *(f"{t} vs teacher" for t in titles), "texts/s", "x teacher", *extra[1:]]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for row in rows:
        cells = [row.name, *([row.tune] if tuned else []), *(f"{100 * row.scores[m]:.2f}" for m in metrics)]
        cells += [_points(None if row.kept is None else row.kept[m]) for m in metrics]
        cells += [f"{row.texts_per_s:,.0f}", "-" if row.speedup is None else f"{row.speedup:.2f}"]
        if tuned:
            cells += [f"{row.embed_seconds + row.train_seconds if row.tune == 'none' else row.train_seconds:.1f}",
                      f"{row.model_bytes / 1e6:.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"
