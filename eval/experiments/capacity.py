"""Where a student's capacity pays: what a bag of tokens can reach, and what a third kept layer costs in speed.

    python -m eval.experiments.capacity static-ceiling --run runs/default \\
        --tasks default --tasks sts:../shared/data/stsb-dev.tsv --tasks passages:../shared/data/passages.txt
    python -m eval.experiments.capacity layers-speed --run runs/default [--layers "0,5;0,2,5"]

`static-ceiling` scores the teacher, the run's static student and the **bag ceiling** on the tasks:
each text embedded as the mean of one fixed vector per token, that vector being the token's
contextual teacher vectors averaged over every occurrence in the task texts themselves (the
evaluation's own text, so no token is unseen and no context is missing from the average). It is
the teacher's mean pooling with attention taken out: a static table trained on any corpus is
context-free in the same way, so the gap from the teacher to the ceiling is what a bag of tokens
cannot learn, and the gap from the ceiling to the student is what training could still close.

`layers-speed` builds transformer students of each layer set from the run's teacher (untrained:
speed does not depend on the weights), exports each to ONNX int8, and measures texts/s at batch
32 on 512 short test texts against the torch teacher in the same process: the speed cost of a
kept layer, as a ratio.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import click
import numpy as np
import torch

from distill.data.corpus import Split
from distill.export.exporter import export_student
from distill.runtime import OnnxEmbedder
from distill.teacher.model import Teacher
from distill.training.finished import open_run, run_teacher
from eval.encoders import TaskEncoder
from eval.latency import measure
from eval.models import student_candidates, task_encoders, teacher_candidate
from eval.report import EvalSettings, run_tasks
from eval.scoring import score_tasks
from students.transformer import TransformerStudent


@click.group()
def main() -> None:
    """Capacity trials: the static student's ceiling, the transformer's layers (see the module docstring)."""
    logging.basicConfig(level=logging.WARNING)


class _Recorder:
    """An encoder that keeps every text it is given and answers random vectors: the task texts, gathered."""

    def __init__(self, dim: int) -> None:
        self.texts: dict[str, None] = {}
        self.rng, self.dim = np.random.default_rng(0), dim

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.update(dict.fromkeys(texts))
        return self.rng.standard_normal((len(texts), self.dim)).astype(np.float32)


def bag_ceiling(teacher: Teacher, texts: Sequence[str], batch_size: int = 32) -> TaskEncoder:
    """The bag ceiling's encoder (module docstring): a (vocab, token_dim) table of the teacher's contextual token
    vectors averaged over `texts`, mean-pooled over each text's tokens and put through the teacher's head."""
    sums = torch.zeros(teacher.vocab_size, teacher.token_dim, dtype=torch.float64)
    counts = torch.zeros(teacher.vocab_size, dtype=torch.float64)
    for _index, batch in teacher.token_batches(list(texts), progress=True, desc="teacher tokens"):
        keep = batch.attention_mask.bool()
        ids = batch.input_ids[keep]
        sums.index_add_(0, ids, batch.token_vectors[keep].double())
        counts.index_add_(0, ids, torch.ones(len(ids), dtype=torch.float64))
    table = (sums / counts.clamp(min=1).unsqueeze(1)).float()  # (vocab, token_dim)

    def encode(batch_texts: Sequence[str]) -> np.ndarray:
        out = []
        for first in range(0, len(batch_texts), batch_size):
            features = teacher.tokenize(batch_texts[first : first + batch_size])
            mask = features["attention_mask"]
            with torch.no_grad():
                out.append(teacher.sentence_head(table[features["input_ids"]], mask).numpy())
        return np.concatenate(out)

    return TaskEncoder(name="bag-ceiling", encode=encode)


@main.command("static-ceiling")
@click.option("--run", "run_dir", default="runs/default", show_default=True, type=click.Path(exists=True))
@click.option("--tasks", multiple=True, default=["default"], show_default=True, help="Task specs (distill eval's).")
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the results as JSON here.")
def static_ceiling(run_dir: str, tasks: tuple[str, ...], output: str | None) -> None:
    """The teacher, the run's static student and the bag ceiling, scored on the tasks."""
    summary, _targets = open_run(run_dir)
    teacher = run_teacher(summary, "cpu")
    parsed = run_tasks(EvalSettings(tasks=list(tasks)), summary, Path(run_dir))
    recorder = _Recorder(teacher.dim)
    for task in parsed:
        task.evaluator(TaskEncoder(name="recorder", encode=recorder))
    click.echo(f"{len(recorder.texts)} distinct task texts; averaging the teacher's token vectors over them")
    ceiling = bag_ceiling(teacher, list(recorder.texts))
    static = [c for c in student_candidates(summary, Path(run_dir), None, None, None, onnx=False) if c.name == "static"]
    candidates = [teacher_candidate(teacher), *static]
    encoders = [*(e for c in candidates for e in task_encoders(c)), ceiling]
    results = score_tasks(parsed, encoders, progress=True)
    for row in results["rows"]:
        if row["main"] or row["metric"].endswith("teacher_index"):
            shares = "  ".join(f"{m} {100 * (v or 0):.1f}%" for m, v in row["shares"].items() if m != "teacher")
            click.echo(f"{row['task']:>16} {row['metric']:<26} teacher {row['scores']['teacher']:6.2f}  {shares}")
    if output:
        Path(output).write_text(json.dumps(results, indent=1))


@main.command("layers-speed")
@click.option("--run", "run_dir", default="runs/default", show_default=True, type=click.Path(exists=True))
@click.option("--layers", "choices", default="0,5;0,2,5", show_default=True, help="Layer sets, ';' between sets.")
@click.option("--threads", default=2, show_default=True, help="torch and onnxruntime threads.")
def layers_speed(run_dir: str, choices: str, threads: int) -> None:
    """int8 ONNX texts/s of each layer set against the torch teacher, at batch 32 on short test texts."""
    torch.set_num_threads(threads)
    summary, targets = open_run(run_dir)
    teacher = run_teacher(summary, "cpu")
    texts, vectors = targets.texts_and_vectors(Split.TEST, 512)
    rates = {"teacher": measure(lambda t, b: teacher.sentence_vectors(t, b), texts)["batch32_texts_per_s"]}
    with tempfile.TemporaryDirectory() as tmp:
        for choice in choices.split(";"):
            layers = [int(i) for i in choice.split(",")]
            student = TransformerStudent.from_teacher(teacher, targets, layers=layers)
            folder = Path(tmp) / choice.replace(",", "-")
            export_student(student, folder, name=f"layers {choice}", texts=texts, teacher_vectors=vectors)
            embedder = OnnxEmbedder(folder, precision="int8", threads=threads)
            rates[f"layers {choice}"] = measure(embedder.encode, texts)["batch32_texts_per_s"]
    for name, rate in rates.items():
        click.echo(f"{name:>14}: {rate:8.1f} texts/s  {rate / rates['teacher']:5.2f}x the torch teacher")


if __name__ == "__main__":
    main()
