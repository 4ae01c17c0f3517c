"""Small recipe trials behind the README's figures: which teacher layers to keep, how training behaves on
a few thousand sentences, and a real teacher of another family.

    python -m eval.experiments.trials layers [--limit 3000] [--layers "0,5;1,5;0,4;0,2,5;0,3,5"]
    python -m eval.experiments.trials epochs [--limit 3000] [--student static] [--epochs 1,2,6]
    python -m eval.experiments.trials distilbert-teacher OUT
    python -m eval.experiments.trials token-targets [--run runs/default] [--batches 30]
    python -m eval.experiments.trials sts --sts ../shared/data/stsb-dev.tsv RUN [RUN ...]
    python -m eval.experiments.trials static-runtime [--run runs/default] [--texts 2000] [--threads 2] \
        [--batch-size 128]
    python -m eval.experiments.trials heads-polarity [--run runs/default] [--hidden 0,256]

`layers` and `epochs` use the default teacher and the first `--limit` sentences of the default
corpus (targets cached in `--cache-dir`); `distilbert-teacher` writes the default teacher's weights
as a DistilBERT sentence-transformers folder (same vectors, another family) for `distill run --teacher OUT`;
`token-targets` times, per batch of 32 training texts of a run, reading the stored token vectors against
recomputing them with the teacher (`--token-targets online`), beside one transformer student step;
`static-runtime` times the static student's ONNX runtime (flat fp32 and int8 graphs, and the padded graph
it had before) beside its tokenizer alone, model2vec and the torch teacher, alternated in one process;
`heads-polarity` gives the 5-fold accuracy of `distill head`'s classifier on gensim's 200 polarity
sentences, on the teacher and each student of a run, for each head width.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from distill.data.corpus import Split
from distill.data.targets import Targets
from distill.io import read_json
from distill.runfolder import read_summary
from distill.teacher.model import Teacher, resolve_teacher
from distill.training.config import RunConfig
from distill.training.pipeline import Stopwatch, load_teacher, prepare
from distill.training.trainer import TrainConfig, Trainer, fidelity
from eval.latency import alternate
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
    from distill.data.targets import TokenTargets
    from distill.training.finished import open_run, run_teacher
    from distill.training.trainer import TrainBatches

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
    from distill.training.finished import open_run, run_teacher
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


@main.command("static-runtime")
@click.option("--run", "run_dir", default="runs/default", show_default=True, help="A run with a static student.")
@click.option("--texts", "count", default=2000, show_default=True, help="Test texts of the run to encode.")
@click.option("--threads", default=2, show_default=True, help="torch, onnxruntime and tokenizer threads.")
@click.option("--batch-size", default=128, show_default=True, help="Texts per model call (every encoder).")
@click.option("--rounds", default=15, show_default=True, type=click.IntRange(min=1),
              help="Passes over the texts by each encoder, alternated.")  # fmt: skip
@click.option("--teacher-rounds", default=2, show_default=True, type=click.IntRange(min=1),
              help="Of those, passes by the (slow) teacher.")  # fmt: skip
def static_runtime(run_dir: str, count: int, threads: int, batch_size: int, rounds: int, teacher_rounds: int) -> None:
    """Texts/s of the static student's ONNX runtime beside its tokenizer alone, model2vec and the teacher."""
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))  # NOTE: the tokenizers' thread pool, before its first use
    import torch

    from distill.training.finished import open_run, run_teacher

    torch.set_num_threads(threads)
    summary, targets = open_run(run_dir)
    texts, _ = targets.texts_and_vectors(Split.TEST, count)
    with tempfile.TemporaryDirectory() as work:
        encoders, parity = _static_encoders(summary, Path(work), texts, threads, batch_size)
        baseline = Path(run_dir) / "baseline" / "model2vec"
        if (baseline / "model.safetensors").is_file():
            from model2vec import StaticModel

            model2vec = StaticModel.from_pretrained(str(baseline))
            encoders["model2vec (numpy)"] = lambda: model2vec.encode(texts, batch_size=batch_size)
        teacher = run_teacher(summary, "cpu")
        encoders["teacher (torch)"] = lambda: teacher.sentence_vectors(texts, batch_size)
        seconds = alternate(encoders, rounds, skip_after={"teacher (torch)": teacher_rounds})
    speed = {name: len(texts) / float(np.median(times)) for name, times in seconds.items()}
    click.echo(f"{len(texts)} test texts of {run_dir}, {threads} threads, batch {batch_size}, median of {rounds} "
               f"alternated passes ({teacher_rounds} for the teacher)")  # fmt: skip
    click.echo(f"{'':34} {'texts/s':>9} {'x teacher':>10} {'of tokenizer':>13}")
    for name, value in speed.items():
        click.echo(f"{name:34} {value:9.0f} {value / speed['teacher (torch)']:10.1f} "
                   f"{value / speed['tokenizer alone']:13.3f}")  # fmt: skip
    click.echo(f"int8 against fp32: mean cosine {parity['int8']['mean_cosine_to_fp32']:.6f}, "
               f"min {parity['int8']['min_cosine_to_fp32']:.6f}; fp32 against torch: max |difference| "
               f"{parity['fp32']['max_abs_difference']:.1e} ({parity['texts']} texts)")  # fmt: skip


def _static_encoders(
    summary: dict[str, Any], work: Path, texts: list[str], threads: int, batch_size: int
) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """The run's static student exported to `work` as today's flat graphs and as the padded graph it had
    before; a pass over `texts` by each, and by the tokenizer alone, with the export's parity figures."""
    import students
    from distill.export.exporter import export_config, export_onnx, export_student
    from distill.runtime import OnnxEmbedder

    entry = next((e for e in summary["students"] if read_json(Path(e["path"]) / "student.json")["kind"] == "static"),
                 None)  # fmt: skip
    if entry is None:
        raise click.ClickException("the run has no static student")
    student = students.load(entry["path"])
    parity = export_student(student, work / "flat", name=entry["name"], texts=texts[:256])
    padded = work / "padded"
    padded.mkdir()
    export_onnx(student, padded / "model.onnx")
    student.tokenizer.save(str(padded / "tokenizer.json"))
    dataclasses.replace(export_config(student, entry["name"]), inputs="padded").write(padded / "config.json")
    fp32, int8 = (OnnxEmbedder(work / "flat", precision=p, threads=threads) for p in ("fp32", "int8"))
    before = OnnxEmbedder(padded, threads=threads)
    encoders: dict[str, Callable[[], Any]] = {
        "tokenizer alone": lambda: fp32.encodings(texts),  # the call `encode` makes first
        "static ONNX fp32 (flat)": lambda: fp32.encode(texts, batch_size),
        "static ONNX int8 (flat)": lambda: int8.encode(texts, batch_size),
        "static ONNX fp32 (padded, before)": lambda: before.encode(texts, batch_size),
    }
    return encoders, parity


@main.command("heads-polarity")
@click.option("--run", "run_dir", default="runs/default", show_default=True, help="A finished run.")
@click.option("--hidden", "widths", default="0,256", show_default=True, help="Head widths (0: linear) to try.")
def heads_polarity(run_dir: str, widths: str) -> None:
    """5-fold accuracy (%) of a task head on gensim's polarity sentences, for the teacher and each student."""
    from sklearn.model_selection import StratifiedKFold

    from distill.heads.classifier import score_head, train_classifier
    from distill.heads.data import encoder_for
    from distill.heads.head import HeadTrainConfig
    from eval.tasks import PolarityProbe

    logging.basicConfig(level=logging.WARNING, force=True)
    summary = read_summary(run_dir)
    models = {"teacher": summary["teacher"], **{s["name"]: s["path"] for s in summary["students"]}}
    probe = PolarityProbe()
    labels = np.where(probe.labels == 1, "positive", "negative")
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(probe.texts, labels))
    vectors = {name: encoder_for(model)[0](probe.texts) for name, model in models.items()}
    click.echo("hidden  " + "  ".join(f"{name:>12}" for name in models))
    for hidden in (int(w) for w in widths.split(",")):
        config = HeadTrainConfig(hidden=hidden)
        scores = [np.mean([score_head(train_classifier(x[a], list(labels[a]), config), x[b], list(labels[b]))[
            "accuracy"] for a, b in folds]) for x in vectors.values()]  # fmt: skip
        click.echo(f"{hidden:>6}  " + "  ".join(f"{100 * score:>12.2f}" for score in scores))


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
