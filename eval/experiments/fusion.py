"""`python -m eval.experiments.fusion`: a transformer student's ONNX graphs, traced against fused, fp32 and int8, timed
beside the torch teacher on short texts and on test sentences.

    python -m eval.experiments.fusion [--run runs/default] [--student transformer] [--threads 2] [--rounds 7]

Each graph is built here from the run's student as `distill export` builds it without and with
`--fuse` (fp32 and int8; the fused int8 has Attention as QAttention), and one more way `distill
export` does not ship: the fused graph with only its MatMuls quantised. Speeds are texts/s at batch
32, the median of `--rounds` passes taken in turn in a new random order each round (so drift on a
shared machine hits all alike), and a ratio to the torch teacher measured in the same rounds. Short
texts are the held-out forum titles and chat lines of `distill.data.domains` (a few words each);
sentences are the run's test split.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import click
import numpy as np
import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

import students
from distill.data.corpus import Split
from distill.data.domains import other_domain_texts
from distill.export.exporter import export_config, export_onnx, fuse_graph, mean_cosine
from distill.export.quantize import quantize, quiet_root_logger
from distill.runtime import MODEL_FILES, TOKENIZER_FILE, OnnxEmbedder
from distill.training.finished import open_run, run_teacher
from eval.latency import alternate

Encode = Callable[[Sequence[str], int], np.ndarray]


def build_variants(
    student: students.Student, name: str, work: Path, texts: Sequence[str], expected: np.ndarray
) -> dict[str, Path]:
    """One export folder per graph variant, each holding it as its fp32 `model.onnx`, made as `distill export`
    makes it (`texts` and the torch student's `expected` vectors for the fused graph's parity check)."""
    folders = {label: work / label.replace(" ", "_") for label in
               ("traced fp32", "fused fp32", "traced int8", "fused int8", "fused int8 MatMul only")}  # fmt: skip
    for folder in folders.values():
        folder.mkdir()
        student.tokenizer.save(str(folder / TOKENIZER_FILE))
        export_config(student, name).write(folder / "config.json")
    model = {label: folder / MODEL_FILES["fp32"] for label, folder in folders.items()}
    export_onnx(student, model["traced fp32"])
    shutil.copy(model["traced fp32"], model["fused fp32"])
    if not fuse_graph(student, folders["fused fp32"], texts, expected)["fused"]:
        raise click.ClickException(f"no transformer fusion applies to {name}'s graph (or it fails its parity check)")
    quantize(model["traced fp32"], model["traced int8"])
    quantize(model["fused fp32"], model["fused int8"], fused=True)
    with quiet_root_logger():  # NOTE: a recipe `distill export` does not ship: only the MatMuls quantised
        quantize_dynamic(str(model["fused fp32"]), str(model["fused int8 MatMul only"]), weight_type=QuantType.QInt8,
                         per_channel=True, op_types_to_quantize=["MatMul"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip
    return folders


def texts_per_second(encoders: dict[str, Encode], texts: Sequence[str], rounds: int) -> dict[str, float]:
    """Median texts/s at batch 32 of each encoder over `rounds` passes, the encoders taking turns in each round."""
    seconds = alternate({label: partial(encode, texts, 32) for label, encode in encoders.items()}, rounds)
    return {label: len(texts) / statistics.median(t) for label, t in seconds.items()}


@click.command()
@click.option("--run", "run_dir", default="runs/default", show_default=True, help="A finished run.")
@click.option("--student", "name", default="transformer", show_default=True, help="The transformer student's name.")
@click.option("--threads", default=2, show_default=True, help="torch and onnxruntime threads.")
@click.option("--rounds", default=7, show_default=True, help="Timed passes per encoder and text set.")
@click.option("--texts", "count", default=512, show_default=True, help="Texts per set.")
def main(run_dir: str, name: str, threads: int, rounds: int, count: int) -> None:
    """Traced against fused ONNX graphs of a transformer student, beside the torch teacher."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().setLevel(logging.ERROR)  # NOTE: onnxruntime's optimizer and quantizer log on the root
    torch.set_num_threads(threads)
    summary, targets = open_run(run_dir)
    entry = next(s for s in summary["students"] if s["name"] == name)
    student = students.load(entry["path"]).eval()
    teacher = run_teacher(summary, "cpu")
    other = other_domain_texts()
    short = [t for key in ("forum titles", "chat") for t in other.get(key, [])][:count]
    sentences, _ = targets.texts_and_vectors(Split.TEST, count)
    with tempfile.TemporaryDirectory() as work:
        reference = student.encode(sentences)
        folders = build_variants(student, name, Path(work), sentences, reference)
        embedders = {label: OnnxEmbedder(f, threads=threads) for label, f in folders.items()}
        encoders: dict[str, Encode] = {"torch teacher": teacher.sentence_vectors, "torch student": student.encode}
        encoders.update({label: e.encode for label, e in embedders.items()})
        cosines = {label: mean_cosine(e.encode(sentences), reference) for label, e in embedders.items()}
        speeds = {kind: texts_per_second(encoders, texts, rounds) for kind, texts in
                  (("short", short), ("sentences", sentences))}  # fmt: skip
    tokens = {kind: np.mean([len(x) for x in student.token_ids(texts)]) for kind, texts in
              (("short", short), ("sentences", sentences))}  # fmt: skip
    click.echo(f"{run_dir} {name}: {threads} threads, batch 32, median of {rounds} rounds; short texts: "
               f"{len(short)} ({tokens['short']:.1f} tokens), sentences: {len(sentences)} "
               f"({tokens['sentences']:.1f} tokens)")  # fmt: skip
    click.echo(f"{'graph':<26} {'cos to torch':>12} {'short/s':>9} {'x teacher':>9} {'sent/s':>9} {'x teacher':>9}")
    for label in encoders:
        cos = f"{cosines[label]:.5f}" if label in cosines else "-"
        row = [f"{speeds[k][label]:>9,.0f} {speeds[k][label] / speeds[k]['torch teacher']:>9.2f}" for k in speeds]
        click.echo(f"{label:<26} {cos:>12} {' '.join(row)}")
    gain = {k: speeds[k]["fused fp32"] / speeds[k]["traced fp32"] for k in speeds}
    click.echo(f"fused fp32 / traced fp32: short x{gain['short']:.2f}, sentences x{gain['sentences']:.2f}")


if __name__ == "__main__":
    main()
