"""Small recipe trials behind the README's figures: which teacher layers to keep, how training behaves on
a few thousand sentences, and a real teacher of another family.

    python -m eval.trials layers [--limit 3000] [--layers "0,5;1,5;0,4;0,2,5;0,3,5"]
    python -m eval.trials epochs [--limit 3000] [--student static] [--epochs 1,2,6]
    python -m eval.trials distilbert-teacher OUT
    python -m eval.trials token-targets [--run runs/default] [--batches 30]
    python -m eval.trials sts --sts ../shared/data/stsb-dev.tsv RUN [RUN ...]

`layers` and `epochs` use the default teacher and the first `--limit` sentences of the default
corpus (targets cached in `--cache-dir`); `distilbert-teacher` writes the default teacher's weights
as a DistilBERT sentence-transformers folder (same vectors, another family) for `distill run --teacher OUT`;
`token-targets` times, per batch of 32 training texts of a run, reading the stored token vectors against
recomputing them with the teacher (`--token-targets online`), beside one transformer student step.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from distill.config import RunConfig
from distill.corpus import Split
from distill.pipeline import Stopwatch, load_teacher, prepare
from distill.targets import Targets
from distill.teacher import Teacher, resolve_teacher
from distill.trainer import TrainConfig, Trainer, fidelity
from students import Student, student_class
from students.transformer import TransformerStudent

# BERT weight names -> DistilBERT's, within one layer.
_DISTILBERT_NAMES = {
    "attention.self.query": "attention.q_lin", "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin", "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm", "intermediate.dense": "ffn.lin1", "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}  # fmt: skip


def _teacher_and_targets(limit: int, cache_dir: str) -> tuple[Teacher, Targets]:
    return prepare(RunConfig(limit=limit, cache_dir=cache_dir, device="cpu"), Stopwatch())


def _test_fidelity(student: Student, targets: Targets) -> float:
    texts, vectors = targets.texts_and_vectors(Split.TEST)
    return fidelity(student.to("cpu"), student.token_ids(texts), vectors)


@click.group()
def main() -> None:
    """Recipe trials on the default teacher (see the module docstring)."""
    logging.basicConfig(level=logging.WARNING)


@main.command()
@click.option("--limit", default=3000, show_default=True, help="Sentences of the default corpus.")
@click.option("--layers", "choices", default="0,5;1,5;0,4;0,2,5;0,3,5", show_default=True,
              help="Layer sets to try, ';' between sets.")  # fmt: skip
@click.option("--cache-dir", default="runs/cache", show_default=True)
def layers(limit: int, choices: str, cache_dir: str) -> None:
    """One epoch of the transformer student for each set of kept layers: start, validation and test fidelity."""
    teacher, targets = _teacher_and_targets(limit, cache_dir)
    config = TrainConfig(**{**TransformerStudent.default_training, "epochs": 1})
    for choice in choices.split(";"):
        kept = [int(i) for i in choice.split(",")]
        student = TransformerStudent.from_teacher(teacher, targets, layers=kept)
        with tempfile.TemporaryDirectory() as work:
            started = time.perf_counter()
            result = Trainer(student, targets, config, Path(work)).train()
        click.echo(f"layers {kept}: start {result.start_fidelity:.4f} -> validation {result.best_fidelity:.4f}, "
                   f"test {_test_fidelity(student, targets):.4f} ({time.perf_counter() - started:.0f} s)")  # fmt: skip


@main.command()
@click.option("--limit", default=3000, show_default=True, help="Sentences of the default corpus.")
@click.option("--student", "kind", default="static", show_default=True, help="Student kind.")
@click.option("--epochs", "epoch_counts", default="1,2,6", show_default=True, help="Epoch counts to try.")
@click.option("--cache-dir", default="runs/cache", show_default=True)
def epochs(limit: int, kind: str, epoch_counts: str, cache_dir: str) -> None:
    """The student trained for each epoch count with its default settings: start and best validation fidelity."""
    teacher, targets = _teacher_and_targets(limit, cache_dir)
    cls = student_class(kind)
    for count in (int(n) for n in epoch_counts.split(",")):
        student = cls.from_teacher(teacher, targets)
        config = TrainConfig(**{**cls.default_training, "epochs": count, "patience": count})
        with tempfile.TemporaryDirectory() as work:
            result = Trainer(student, targets, config, Path(work)).train()
        click.echo(f"{kind}, {count} epoch(s): start {result.start_fidelity:.4f} -> validation "
                   f"{result.best_fidelity:.4f} (best epoch {result.best_epoch})")  # fmt: skip


@main.command("token-targets")
@click.option("--run", "run_dir", default="runs/default", show_default=True, help="A finished run with stored targets.")
@click.option("--batches", default=30, show_default=True, help="Batches of 32 training texts to time.")
def token_targets(run_dir: str, batches: int) -> None:
    """Milliseconds a batch: token vectors read from the cache, recomputed by the teacher, and a training step."""
    from distill.pipeline import open_run, run_teacher
    from distill.targets import TokenTargets
    from distill.trainer import TrainBatches

    summary, targets = open_run(run_dir)
    teacher = run_teacher(summary, "cpu")
    student = TransformerStudent.from_teacher(teacher, targets)
    rng = np.random.default_rng(0)
    rows = [np.sort(rng.choice(targets.indices(Split.TRAIN), 32, replace=False)) for _ in range(batches)]
    stored = TrainBatches(targets, student.text_encoder(), token_vectors=True)
    bare = TrainBatches(targets, student.text_encoder(), token_vectors=False)
    config = TrainConfig(**{**TransformerStudent.default_training, "epochs": 1})
    with tempfile.TemporaryDirectory() as work:
        trainer = Trainer(student, targets, config, Path(work), token_targets=TokenTargets.STORE, teacher=teacher)

        def online(batch: np.ndarray) -> None:
            ready = bare[batch]
            teacher.token_vectors_on_device(ready["input_ids"], ready["attention_mask"])

        def step(batch: np.ndarray) -> None:
            loss = trainer._loss(stored[batch])
            trainer.optimizer.zero_grad()
            loss.backward()
            trainer.optimizer.step()

        ms = {name: _ms_a_batch(f, rows) for name, f in [("batch without token vectors", bare.__getitem__),
              ("batch with stored token vectors", stored.__getitem__), ("batch + teacher recomputing them", online),
              ("transformer student step (stored)", step)]}  # fmt: skip
    for name, value in ms.items():
        click.echo(f"{name:<36} {value:8.1f} ms")


def _ms_a_batch(f: Any, batches: list[np.ndarray]) -> float:
    started = time.perf_counter()
    for batch in batches:
        f(batch)
    return (time.perf_counter() - started) / len(batches) * 1000


@main.command()
@click.option("--sts", "sts_file", required=True, type=click.Path(dir_okay=False), help="An STS file (eval --sts).")
@click.argument("runs", nargs=-1, required=True)
def sts(sts_file: str, runs: tuple[str, ...]) -> None:
    """STS Spearman (x100) of the first run's teacher and of every student of each run, and each one's gap."""
    import students
    from distill.pipeline import open_run, run_teacher
    from eval.tasks import read_sts, sts_spearman

    first, second, gold = read_sts(sts_file)
    teacher = None
    for run in runs:
        summary, _ = open_run(run)
        if teacher is None:
            model = run_teacher(summary, "cpu")
            teacher = sts_spearman(lambda texts, m=model: m.sentence_vectors(list(texts)), first, second, gold)
            click.echo(f"{'teacher':<32} {teacher:6.2f}")
        for entry in summary["students"]:
            student = students.load(entry["path"])
            score = sts_spearman(lambda texts, s=student: s.encode(list(texts)), first, second, gold)
            click.echo(f"{run + ' ' + entry['name']:<32} {score:6.2f}  gap {teacher - score:5.2f}")


@main.command("distilbert-teacher")
@click.argument("out", type=click.Path(file_okay=False))
def distilbert_teacher(out: str) -> None:
    """Write the default teacher as a DistilBERT folder: the token-type row folded into the positions."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    source = resolve_teacher("all-MiniLM-L6-v2")
    teacher = load_teacher(RunConfig(device="cpu"))
    bert, config = teacher.model.state_dict(), teacher.model.config
    student = DistilBertModel(DistilBertConfig(
        vocab_size=config.vocab_size, dim=config.hidden_size, n_layers=config.num_hidden_layers,
        n_heads=config.num_attention_heads, hidden_dim=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings, pad_token_id=config.pad_token_id,
    ))  # fmt: skip
    state = {"embeddings.word_embeddings.weight": bert["embeddings.word_embeddings.weight"],
             "embeddings.position_embeddings.weight": bert["embeddings.position_embeddings.weight"]
             + bert["embeddings.token_type_embeddings.weight"][0]}  # fmt: skip
    for key in ("weight", "bias"):
        state[f"embeddings.LayerNorm.{key}"] = bert[f"embeddings.LayerNorm.{key}"]
        for i in range(config.num_hidden_layers):
            for old, new in _DISTILBERT_NAMES.items():
                state[f"transformer.layer.{i}.{new}.{key}"] = bert[f"encoder.layer.{i}.{old}.{key}"]
    student.load_state_dict(state, strict=True)
    folder = Path(out)
    shutil.rmtree(folder, ignore_errors=True)
    student.save_pretrained(folder)
    teacher.tokenizer.save_pretrained(folder)
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        shutil.copy(source / name, folder / name)
    shutil.copytree(source / "1_Pooling", folder / "1_Pooling")
    (folder / "2_Normalize").mkdir(exist_ok=True)
    texts = ["A man is playing a guitar.", "The committee approved the new budget on Tuesday.", "short"]
    with torch.inference_mode():
        rewritten = Teacher.load(str(folder)).sentence_vectors(texts)
    difference = float(np.abs(rewritten - teacher.sentence_vectors(texts)).max())
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    click.echo(f"wrote {folder} ({model_type}); max |difference| to the default teacher: {difference:.1e}")


if __name__ == "__main__":
    main()
