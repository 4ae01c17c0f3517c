"""`distill compress`: a run's static student stored compressed (`students.static_compressed`), added to the run.

The static student's table is compressed (int8, int4 or product quantisation), optionally tuned on the run's
teacher targets with the codes fixed (the scales or codebooks learn, by the same trainer as every student), tested
on the run's test texts, saved as `RUN/students/NAME` and recorded in the run's summary.json like any student, so
`distill eval`, `distill export` and `distill run --tasks` treat it like one.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import students
from distill.data.corpus import Split
from distill.data.targets import Targets, TokenTargets
from distill.errors import DistillError
from distill.io import read_json
from distill.runfolder import read_summary, write_summary
from distill.training.fidelity import fidelity
from distill.training.finished import open_run
from distill.training.pipeline import TEST_TEXTS, StudentSummary, folder_bytes
from distill.training.trainer import TrainConfig, Trainer
from students.base import CONFIG_FILE
from students.static import StaticStudent
from students.static_compressed import SCALE_DTYPES, SCHEMES, CompressedStaticStudent

logger = logging.getLogger(__name__)

# How each token's row counts in pq's k-means: alike, by the square root of its count in the training texts, or by
# its count (each with one added, so a token the texts never hold still has a say).
WEIGHTINGS = ("none", "sqrt", "counts")


@dataclass
class CompressConfig:
    """What `distill compress` makes; a flag of the command has each field's name."""

    run: str
    scheme: str = "pq"
    parts: int = 48  # pq: pieces a row
    # pq: how each token's row counts in k-means (WEIGHTINGS). NOTE: counts, as measured on the default run (issue
    # 31's task set): of the static student's mean share, pq-48 kept 96.7% unweighted, 97.0% sqrt, 97.4% counts.
    weighting: str = "counts"
    scale_dtype: str = "float32"  # int8 / int4: how each row's scale is stored
    tune_epochs: int = 0  # epochs tuning the scales or codebooks on the run's targets; 0: none
    lr: float = 1e-3  # the tuning's peak learning rate
    name: str = ""  # the new student's name in the run [default: static-<scheme>, with the parts for pq]
    source: str = "static"  # the run's static student to compress
    overwrite: bool = False  # replace a student of the same name
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise DistillError(f"--scheme must be one of {', '.join(SCHEMES)}, not {self.scheme!r}")
        if self.weighting not in WEIGHTINGS:
            raise DistillError(f"--weighting must be one of {', '.join(WEIGHTINGS)}, not {self.weighting!r}")
        if self.scale_dtype not in SCALE_DTYPES:
            raise DistillError(f"--scale-dtype must be float32 or float16, not {self.scale_dtype!r}")
        if self.parts <= 0 or self.tune_epochs < 0 or not self.lr > 0:
            raise DistillError("--parts and --lr must be positive and --tune-epochs 0 or more")
        self.name = self.name or f"static-{self.scheme}" + (str(self.parts) if self.scheme == "pq" else "")


def compress_run(config: CompressConfig, *, progress: bool = False) -> dict[str, Any]:
    """Make, tune (if asked), test and save the compressed student and add it to the run; its summary entry.

    A compressed student as `config.source` is not compressed again but tuned further (its scheme and codes kept).
    """
    run = Path(config.run)
    summary = read_summary(run)
    source = source_entry(summary, config.source)
    names = [s["name"] for s in summary["students"]]
    if config.name in names and not config.overwrite:
        raise DistillError(f"{str(run)!r} already holds a student {config.name!r}: give another --name, or "
                           "--overwrite to replace it")  # fmt: skip
    static = students.load(source["path"])
    _, targets = open_run(run)
    started = time.perf_counter()
    student = static if isinstance(static, CompressedStaticStudent) else compressed(static, targets, config)
    tuned = tune(student, targets, config, run / "train" / config.name, progress) if config.tune_epochs else {}
    path = student.save(run / "students" / config.name)
    texts, vectors = targets.texts_and_vectors(Split.TEST, TEST_TEXTS)
    test = fidelity(student, student.token_ids(texts), vectors) if texts else float("nan")
    entry = StudentSummary(
        name=config.name, path=str(path), params=student.num_parameters(), bytes=folder_bytes(path),
        test_fidelity=test, reviews_fidelity=float("nan"), valid_fidelity=tuned.get("valid", float("nan")),
        train_seconds=round(time.perf_counter() - started, 2), epochs=tuned.get("epochs", 0),
        start_fidelity=tuned.get("start", float("nan")),
        metrics={"source_test_fidelity": float(source.get("test_fidelity", float("nan")))},
    )  # fmt: skip
    record = asdict(entry)
    latest = read_summary(run)  # NOTE: read again: another command may have added a student meanwhile
    kept = [s for s in latest["students"] if s["name"] != config.name]
    write_summary(run, {**latest, "students": [*kept, record]})
    logger.info("%s: test fidelity %.4f (%s: %.4f), %.2f MB, saved to %s", config.name, test, config.source,
                record["metrics"]["source_test_fidelity"], entry.bytes / 2**20, path)  # fmt: skip
    return record


def compressed(static: StaticStudent, targets: Targets, config: CompressConfig) -> CompressedStaticStudent:
    """`static` compressed as `config` says, pq's k-means weighted by the tokens' counts in the training texts."""
    vocab = static.config.vocab_size
    counts = targets.token_id_counts(Split.TRAIN, minlength=vocab) if config.scheme == "pq" else np.ones(vocab)
    parts = f", {config.parts} parts" if config.scheme == "pq" else ""
    logger.info("compressing %s: %s%s, weighting %s", config.source, config.scheme, parts, config.weighting)
    weights = token_weights(counts, config.weighting)
    return CompressedStaticStudent.from_static(static, config.scheme, config.parts, weights,
                                               scale_dtype=config.scale_dtype, seed=config.seed)  # fmt: skip


def source_entry(summary: dict[str, Any], name: str) -> dict[str, Any]:
    """The summary entry of the run's static student `name` (or a compressed one, to tune further); DistillError
    where there is none."""
    kinds = (StaticStudent.kind, CompressedStaticStudent.kind)
    for entry in summary["students"]:
        config = Path(entry["path"]) / CONFIG_FILE
        if entry["name"] == name and config.is_file() and read_json(config).get("kind") in kinds:
            return entry
    statics = [e["name"] for e in summary["students"] if (Path(e["path"]) / CONFIG_FILE).is_file()
               and read_json(Path(e["path"]) / CONFIG_FILE).get("kind") == StaticStudent.kind]  # fmt: skip
    hint = f"--source {statics[0]}" if statics else "a run with one (`distill run --students static`)"
    raise DistillError(f"the run has no static student {name!r} to compress; give {hint}")


def token_weights(counts: np.ndarray, weighting: str) -> np.ndarray | None:
    """(vocab,) each row's weight in pq's k-means from the tokens' counts in the training texts (None: alike)."""
    if weighting == "none":
        return None
    smoothed = counts.astype(np.float64) + 1.0
    return np.sqrt(smoothed) if weighting == "sqrt" else smoothed


def tune(
    student: CompressedStaticStudent, targets: Targets, config: CompressConfig, work: Path, progress: bool
) -> dict[str, float]:
    """Train the student's scales or codebooks (its codes fixed) on the run's targets; validation figures."""
    shutil.rmtree(work, ignore_errors=True)  # NOTE: a compression made again starts its tuning afresh
    train = TrainConfig(**{**CompressedStaticStudent.default_training, "epochs": config.tune_epochs, "lr": config.lr,
                           "seed": config.seed})  # fmt: skip
    result = Trainer(student, targets, train, work, token_targets=TokenTargets.NONE).train(progress=progress)
    student.finalize()  # the tuned values rounded to how they are stored
    logger.info("tuned %d epochs: validation fidelity %.4f -> %.4f", result.epochs_run, result.start_fidelity,
                result.best_fidelity)  # fmt: skip
    return {"start": result.start_fidelity, "valid": result.best_fidelity, "epochs": result.epochs_run}
