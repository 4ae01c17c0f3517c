"""The int8 `distill export` ships (activations quantised per row) beside onnxruntime's dynamic int8, which it
replaced (one activation scale per batch): how much a text's vector depends on its batch, fidelity, task
scores, size and speed, for every student of a run and the teacher's own export.

    python -m eval.experiments.int8 --run runs/default [--tasks default --tasks sts:FILE] [--texts 512]

The dynamic int8 is made again from each export's fp32 graph, as `distill export` made it until it was replaced.
Speed: texts/s at batch 1 and batch 32 on the run's test texts, already tokenized (the graph and the runtime's
batching alone), every graph timed in the same rounds in a new random order each round (median of the rounds),
and the torch teacher in the same run as the reference.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

from distill.cli.tasks import print_task_table
from distill.data.corpus import Split
from distill.errors import DistillError
from distill.export.exporter import EXPORT_DIR, mean_cosine, min_cosine
from distill.export.quantize import quiet_root_logger
from distill.runtime import CONFIG_FILE, MODEL_FILES, TOKENIZER_FILE, OnnxEmbedder
from distill.runtime.consistency import batch_dependence
from distill.training.finished import open_run, run_teacher
from eval.encoders import TaskEncoder
from eval.latency import alternate
from eval.models import TEACHER_EXPORT, export_teacher
from eval.scoring import score_tasks
from eval.suite import parse_tasks

BATCHES = (1, 32)
VARIANTS = ("fp32", "dynamic int8", "per-row int8")


def dynamic_int8(fp32: Path, int8: Path) -> None:
    """onnxruntime's dynamic int8, as `distill export` wrote it before per-row int8: per-channel weights, one
    activation scale per tensor (so per batch), after onnxruntime's pre-processing."""
    with quiet_root_logger(), tempfile.TemporaryDirectory(dir=int8.parent) as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(int8), weight_type=QuantType.QInt8, per_channel=True)


def exports(run_dir: Path, summary: dict[str, Any], targets: Any) -> dict[str, Path]:
    """The export folder of the teacher (made now if missing) and of every student of the run that has one."""
    folders = {}
    if export_teacher(run_teacher(summary, "cpu"), targets, run_dir / TEACHER_EXPORT):
        folders["teacher"] = run_dir / TEACHER_EXPORT
    for entry in summary["students"]:
        folder = run_dir / EXPORT_DIR / entry["name"]
        if (folder / MODEL_FILES["int8"]).is_file():
            folders[entry["name"]] = folder
    if len(folders) <= 1:
        raise DistillError(f"{run_dir} has no exported students: run `distill export --run {run_dir}` first")
    return folders


def embedders(folder: Path, work: Path) -> dict[str, OnnxEmbedder]:
    """fp32, the dynamic int8 made again from it, and the shipped per-row int8 of one export folder."""
    dynamic = work / folder.name
    dynamic.mkdir()
    for file in (CONFIG_FILE, TOKENIZER_FILE, MODEL_FILES["fp32"]):
        shutil.copy2(folder / file, dynamic / file)
    if OnnxEmbedder(folder).config.inputs == "flat":
        shutil.copy2(folder / MODEL_FILES["int8"], dynamic / MODEL_FILES["int8"])  # NOTE: the static lookup: unchanged
    else:
        dynamic_int8(folder / MODEL_FILES["fp32"], dynamic / MODEL_FILES["int8"])
    return {"fp32": OnnxEmbedder(folder, precision="fp32"), "dynamic int8": OnnxEmbedder(dynamic, precision="int8"),
            "per-row int8": OnnxEmbedder(folder, precision="int8")}  # fmt: skip


def quality(models: dict[str, OnnxEmbedder], texts: Sequence[str], teacher_vectors: np.ndarray) -> dict[str, Any]:
    """Each variant's batch dependence, cosine to fp32 and fidelity to the teacher on `texts`, and its file's size."""
    reference = models["fp32"].encode(texts)
    out = {}
    for variant, embedder in models.items():
        vectors, file = embedder.encode(texts), embedder.path / MODEL_FILES[embedder.precision]
        out[variant] = {"batch_dependence": max(batch_dependence(embedder, texts).values()),
                        "mean_cosine_to_fp32": mean_cosine(vectors, reference),
                        "min_cosine_to_fp32": min_cosine(vectors, reference),
                        "fidelity": mean_cosine(vectors, teacher_vectors),
                        "megabytes": file.stat().st_size / 2**20}  # fmt: skip
    return out


def speeds(models: dict[str, dict[str, OnnxEmbedder]], teacher_encode: Callable[[Sequence[str], int], Any],
           texts: Sequence[str], rounds: int) -> dict[str, dict[str, float]]:  # fmt: skip
    """Texts/s of every (model, variant) and of the torch teacher at each of `BATCHES`, timed in shared rounds."""
    runs: dict[str, Callable[[], Any]] = {}
    for batch in BATCHES:
        runs[f"torch teacher|{batch}"] = functools.partial(teacher_encode, texts, batch)
        for name, variants in models.items():
            for variant, embedder in variants.items():
                ids = embedder.token_ids(texts)
                runs[f"{name}|{variant}|{batch}"] = functools.partial(embedder.encode_ids, ids, batch)
    seconds = alternate(runs, rounds)
    return {key: len(texts) / float(np.median(values)) for key, values in seconds.items()}


def task_scores(models: dict[str, dict[str, OnnxEmbedder]], teacher_encode: Callable[[Sequence[str]], Any],
                specs: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """The tasks of `specs` for every (model, variant), beside the torch teacher (the reference of the shares)."""
    encoders = [TaskEncoder(name="torch teacher", encode=teacher_encode)]
    for name, variants in models.items():
        encoders += [TaskEncoder(name=f"{name}|{variant}", encode=e.encode) for variant, e in variants.items()]
    return score_tasks(parse_tasks(specs), encoders)


def report(run_dir: Path, *, texts: int, rounds: int, specs: Sequence[str]) -> None:
    summary, targets = open_run(run_dir)
    sample, teacher_vectors = targets.texts_and_vectors(Split.TEST, texts)
    teacher = run_teacher(summary, "cpu")
    with tempfile.TemporaryDirectory() as work:
        models = {name: embedders(folder, Path(work)) for name, folder in exports(run_dir, summary, targets).items()}
        click.echo(f"{len(sample)} test texts of {run_dir}; onnxruntime's default threads; batch dependence: max |a "
                   "text alone - the same text batched by length, batched with any texts, padded further|")  # fmt: skip
        click.echo(f"\n{'model':<12} {'int8':<13} {'batch dep.':>10} {'cos fp32':>9} {'min cos':>8} "
                   f"{'fidelity':>9} {'MB':>6}")  # fmt: skip
        for name, variants in models.items():
            for variant, figures in quality(variants, sample, teacher_vectors).items():
                click.echo(f"{name:<12} {variant:<13} {figures['batch_dependence']:>10.1e} "
                           f"{figures['mean_cosine_to_fp32']:>9.5f} {figures['min_cosine_to_fp32']:>8.5f} "
                           f"{figures['fidelity']:>9.4f} {figures['megabytes']:>6.1f}")  # fmt: skip
        speed = speeds(models, teacher.sentence_vectors, sample, rounds)
        click.echo(f"\ntexts/s, {rounds} rounds (as a multiple of the torch teacher at the same batch size)")
        click.echo(f"{'model':<12} {'int8':<13} " + " ".join(f"{f'batch {b}':>20}" for b in BATCHES)
                   + f" {'per-row / dynamic':>20}")  # fmt: skip
        for name, variants in models.items():
            for variant in variants:
                rate = {b: speed[f"{name}|{variant}|{b}"] for b in BATCHES}
                cells = [f"{rate[b]:>9.1f} ({rate[b] / speed[f'torch teacher|{b}']:>6.2f}x)" for b in BATCHES]
                ratio = "" if variant != "per-row int8" else " / ".join(
                    f"{rate[b] / speed[f'{name}|dynamic int8|{b}']:.2f}" for b in BATCHES)  # fmt: skip
                click.echo(f"{name:<12} {variant:<13} " + " ".join(f"{c:>20}" for c in cells) + f" {ratio:>20}")
        if specs:
            section = task_scores(models, teacher.sentence_vectors, specs)
            print_task_table(section)
            click.echo("\nmean share of the torch teacher's task scores (main metrics)")
            for model, share in section["mean_share"].items():
                click.echo(f"  {model:<28} {'-' if share is None else f'{100 * share:.1f}%'}")


@click.command()
@click.option("--run", "run_dir", default="runs/default", show_default=True, type=click.Path(file_okay=False),
              help="A finished, exported run.")  # fmt: skip
@click.option("--texts", type=click.IntRange(min=32), default=512, show_default=True, help="Test texts to use.")
@click.option("--rounds", type=click.IntRange(min=1), default=7, show_default=True, help="Timing rounds.")
@click.option("--tasks", "specs", multiple=True, help="Task SPECs to score each variant on, as `distill eval --tasks`.")
def main(run_dir: str, texts: int, rounds: int, specs: tuple[str, ...]) -> None:
    """Per-row int8 (shipped) against onnxruntime's dynamic int8 (replaced) for every export of a run."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        report(Path(run_dir), texts=texts, rounds=rounds, specs=specs)
    except DistillError as e:
        raise click.ClickException(str(e)) from e


if __name__ == "__main__":
    main()
