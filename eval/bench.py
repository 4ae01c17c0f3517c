"""`make bench`: the headline figures of a distilled run, measured now, teacher and students in one process.

For each student: held-out fidelity (from the run), size, throughput at batch 32 as a ratio to the
teacher's measured in the same process, and STS Spearman when an STS file is given (or the STS
Benchmark dev split sits in ../shared/data). For the token generator it also trains the reference
it is judged against: the same student on the teacher's real per-token vectors instead of generated ones.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

import students
from distill.config import build_config, read_toml
from distill.corpus import Split
from distill.errors import DistillError
from distill.io import read_json, write_json
from distill.pipeline import cached_targets
from distill.teacher import Teacher
from distill.trainer import TrainConfig, Trainer, fidelity
from eval.tasks import read_sts, sts_spearman
from students.tokengen import TokenGenStudent

logger = logging.getLogger(__name__)

SHARED_STS = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsb-dev.tsv"


def throughput(encode: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str], repeats: int = 3) -> float:
    """Texts per second: the median of `repeats` timed passes over `texts`, after one warm-up pass."""
    encode(texts[:64])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        encode(texts)
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)


def reference_fidelity(teacher: Teacher, targets: Any, work: Path) -> float:
    """Test fidelity of the token-generator student built on the teacher's real per-token vectors."""
    student = TokenGenStudent.from_teacher(teacher, targets, source="teacher")
    Trainer(student, targets, TrainConfig(**TokenGenStudent.default_training), work).train()
    test_vectors = np.asarray(targets.sentence_vectors[targets.indices(Split.TEST)])
    return fidelity(student, student.token_ids(targets.texts_of(Split.TEST)), test_vectors)


def bench(run: Path, config_file: str, sts: Path | None, n_texts: int, batch_size: int) -> dict[str, Any]:
    config = build_config(read_toml(config_file), {"output": str(run)})
    summary_file = run / "summary.json"
    if not summary_file.is_file():
        raise DistillError(f"{str(run)!r} has no summary.json; run `make distill` first")
    summary = read_json(summary_file)
    teacher = Teacher.load(config.teacher)
    targets = cached_targets(teacher, config)
    texts = targets.texts_of(Split.TEST)[:n_texts]
    pairs = read_sts(sts) if sts else None
    teacher_speed = throughput(lambda t: teacher.sentence_vectors(t, batch_size), texts)
    rows: dict[str, dict[str, Any]] = {"teacher": {
        "params": sum(p.numel() for p in teacher.model.parameters()), "texts_per_s": teacher_speed, "speed_ratio": 1.0,
        "sts": sts_spearman(lambda t: teacher.sentence_vectors(t, batch_size), *pairs) if pairs else None,
    }}  # fmt: skip
    for entry in summary["students"]:
        student = students.load(entry["path"])
        speed = throughput(lambda t, s=student: s.encode(t, batch_size), texts)
        rows[entry["name"]] = {
            "params": entry["params"], "bytes": entry["bytes"], "test_fidelity": entry["test_fidelity"],
            "test_token_fidelity": entry.get("test_token_fidelity"), "texts_per_s": speed,
            "speed_ratio": speed / teacher_speed, **entry.get("metrics", {}),
            "sts": sts_spearman(lambda t, s=student: s.encode(t, batch_size), *pairs) if pairs else None,
        }  # fmt: skip
        if isinstance(student, TokenGenStudent):
            reference = reference_fidelity(teacher, targets, run / "bench" / "tokengen-reference")
            rows[entry["name"]]["reference_test_fidelity"] = reference
            rows[entry["name"]]["loss_against_reference"] = reference - entry["test_fidelity"]
    return {"texts": len(texts), "batch_size": batch_size, "sts_file": str(sts) if sts else None, "rows": rows}


def print_report(report: dict[str, Any]) -> None:
    click.echo(f"\nthroughput over {report['texts']} test texts at batch {report['batch_size']}, same process; "
               f"STS: {report['sts_file'] or 'no file'}")  # fmt: skip
    click.echo(f"{'model':<12} {'fidelity':>8} {'tokens':>7} {'params':>11} {'size':>8} {'texts/s':>8} "
               f"{'x teacher':>9} {'STS':>6}")  # fmt: skip
    for name, row in report["rows"].items():
        click.echo(
            f"{name:<12} {_fmt(row.get('test_fidelity'), 8)} {_fmt(row.get('test_token_fidelity'), 7)} "
            f"{row['params']:>11,} {_fmt(row['bytes'] / 2**20 if 'bytes' in row else None, 6, 1)}MB "
            f"{row['texts_per_s']:>8.1f} {row['speed_ratio']:>9.2f} {_fmt(row['sts'], 6, 2)}"
        )
        for key in ("generator_heldout_vocab_cosine", "generator_heldout_word_cosine", "reference_test_fidelity",
                    "loss_against_reference"):  # fmt: skip
            if key in row:
                click.echo(f"{'':<12} {key}: {row[key]:.4f}")


def _fmt(value: float | None, width: int, digits: int = 4) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


@click.command()
@click.option("--run", "run_dir", default="runs/default", show_default=True, help="The run folder to measure.")
@click.option("--config", "config_file", default="configs/default.toml", show_default=True,
              help="The config the run was made with (to find its cached targets).")  # fmt: skip
@click.option(
    "--sts",
    type=click.Path(),
    default=None,
    help="An STS file (sentence, sentence, score a line); default: ../shared/data/stsb-dev.tsv if present.",
)
@click.option("--texts", "n_texts", default=1000, show_default=True, help="Test texts to time.")
@click.option("--batch-size", default=32, show_default=True, help="Batch size for the throughput figures.")
def main(run_dir: str, config_file: str, sts: str | None, n_texts: int, batch_size: int) -> None:
    """Print the headline comparison of teacher and students for a run, and save it as bench.json."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        sts_path = Path(sts) if sts else (SHARED_STS if SHARED_STS.is_file() else None)
        report = bench(Path(run_dir), config_file, sts_path, n_texts, batch_size)
    except DistillError as e:
        raise click.ClickException(str(e)) from e
    write_json(Path(run_dir) / "bench.json", report)
    print_report(report)


if __name__ == "__main__":
    main()
