"""Trial: the static student's table made smaller, each way at its stored bytes, scored on the same tasks.

    python -m eval.experiments.compress --run runs/default --tasks default \\
        --tasks sts:../shared/data/stsb-dev.tsv --tasks passages:../shared/data/passages.txt

Each variant is the run's static student with its table replaced by what a compressed table gives back, so its
vectors are exactly those a student storing it would give (a text's vector is the mean of its rows, then unit
length; a PCA table's rows are the mean row plus their reduced coordinates times the basis, which averages alike):

    int8 / int4 / int2  each row quantised symmetrically, one fp32 scale a row (int2: -1, 0, 1)
    binary         each value's sign, times its row's mean absolute value (-rotated: in the table's principal
                   axes; -64: a scale for each 64 values; -norm: the scale that keeps each row's length)
    pca-D          rows in the D leading directions of the table (the basis, fp32, kept), so vectors stay in the
                   teacher's space; pca-D-int8 also quantises the coordinates
    int4-head-N    the N most frequent tokens of the training texts in int4, the others binary-norm
    kmeans-K       K centroid rows (int8) and a 2-byte centroid index a token: model2vec's vocabulary quantisation

With `--train-binary EPOCHS`, the static student is also trained on the run's targets through a binary table
(`BinaryTableStudent`) and scored as "binary-trained".

The variants are written as students of one run folder (`OUT`), which `distill run --tasks` scoring reads, and
each one's bytes are what it would store. A first look at issue 31's size frontier; nothing here is shipped.

With `--shipped RUN`, no variant is made: the students of RUN are scored as they are, each with the bytes of its
saved folder (the model card that eval writes left out), and its mean share against RUN's static student: the
way to measure real compressed students (`distill compress --run RUN ...`, `students.static_compressed`).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
import torch.nn.functional as F

import students
from distill.cli.tasks import aligned
from distill.data.corpus import Split
from distill.data.targets import TokenTargets
from distill.runfolder import read_summary, write_summary
from distill.training.finished import open_run
from distill.training.pipeline import folder_bytes
from distill.training.trainer import TrainConfig, Trainer
from eval.report import EvalSettings, run_tasks, score_run_tasks
from students.static import StaticStudent, masked_mean
from students.static_compressed import quantize_rows

Compressed = tuple[np.ndarray, int]  # (the table as the student reads it back, bytes stored)


def quantised(table: np.ndarray, bits: int) -> Compressed:
    """Each row to signed `bits`-bit integers with its own scale (`quantize_rows`, as a compressed student stores
    them); bytes: the codes and an fp32 scale a row."""
    codes, scales = quantize_rows(table, bits, torch.float32)  # (vocab, dim) int8, (vocab,)
    return codes * scales[:, None], table.shape[0] * (table.shape[1] * bits // 8 + 4)


def binary(table: np.ndarray, keep_norm: bool = False) -> Compressed:
    """Each value's sign times its row's mean absolute value (`keep_norm`: the scale that keeps the row's length);
    bytes: one bit a value and an fp32 scale a row."""
    scale = np.abs(table).mean(axis=1, keepdims=True)
    if keep_norm:
        scale = np.linalg.norm(table, axis=1, keepdims=True) / np.sqrt(table.shape[1])
    return (np.where(table >= 0, 1.0, -1.0) * scale).astype(np.float32), table.shape[0] * (table.shape[1] // 8 + 4)


def binary_rotated(table: np.ndarray) -> Compressed:
    """`binary` in the table's principal axes (every one kept, so nothing is lost but the signs' rounding), rotated
    back; bytes: those of `binary`, the rotation and the mean row in fp16."""
    mean = table.mean(axis=0)
    _, _, basis = np.linalg.svd(table - mean, full_matrices=False)  # (dim, dim) orthonormal
    rows, stored = binary((table - mean) @ basis.T)
    return (rows @ basis + mean).astype(np.float32), stored + (basis.size + mean.size) * 2


def binary_blocks(table: np.ndarray, block: int = 64) -> Compressed:
    """`binary` with a scale for each `block` values of a row (fp16); bytes: one bit a value, 2 a scale."""
    blocks = table.reshape(table.shape[0], -1, block)
    rows, _ = binary(blocks.reshape(-1, block))
    return rows.reshape(table.shape), table.size // 8 + blocks.shape[0] * blocks.shape[1] * 2


def pca(table: np.ndarray, dims: int, bits: int = 32) -> Compressed:
    """The rows' coordinates in the table's `dims` leading directions (with the mean row and the basis, fp32)."""
    mean = table.mean(axis=0)
    _, _, basis = np.linalg.svd(table - mean, full_matrices=False)  # (dim, dim): rows are directions
    basis = basis[:dims]
    coordinates = (table - mean) @ basis.T  # (vocab, dims)
    stored = table.shape[0] * dims * 4
    if bits < 32:
        coordinates, stored = quantised(coordinates, bits)
    return (coordinates @ basis + mean).astype(np.float32), stored + (dims + 1) * table.shape[1] * 4


def kmeans(table: np.ndarray, clusters: int) -> Compressed:
    """Each token's row replaced by its cluster's centroid (int8); bytes: the centroids and a 2-byte index a row."""
    from sklearn.cluster import MiniBatchKMeans

    fit = MiniBatchKMeans(clusters, random_state=0, batch_size=4096, n_init=1).fit(table)
    centroids, stored = quantised(fit.cluster_centers_.astype(np.float32), 8)
    return centroids[fit.labels_], stored + table.shape[0] * 2


def product_quantised(table: np.ndarray, parts: int, weights: np.ndarray | None = None) -> Compressed:
    """Each row cut into `parts` pieces, each piece replaced by the nearest of 256 centroids learnt for its part
    (k-means, weighted by `weights` when given); bytes: one code a piece and the centroids in fp16."""
    from sklearn.cluster import KMeans

    pieces = table.reshape(table.shape[0], parts, -1)
    rows = np.empty_like(pieces)
    for part in range(parts):
        fit = KMeans(256, random_state=0, n_init=1, max_iter=50).fit(pieces[:, part], sample_weight=weights)
        rows[:, part] = fit.cluster_centers_[fit.labels_]
    return rows.reshape(table.shape).astype(np.float32), table.shape[0] * parts + parts * 256 * pieces.shape[2] * 2


def by_frequency(table: np.ndarray, counts: np.ndarray, head: int) -> Compressed:
    """The `head` most frequent tokens' rows in int4, the rest `binary`; bytes: both, and a bit a row saying which."""
    order = np.argsort(-counts[: table.shape[0]], kind="stable")
    frequent = np.zeros(table.shape[0], dtype=bool)
    frequent[order[:head]] = True
    rows, tail_bytes = binary(table, keep_norm=True)
    rows[frequent], head_bytes = quantised(table[frequent], 4)
    return rows, int(head_bytes + tail_bytes * (~frequent).sum() // table.shape[0] + table.shape[0] // 8)


class BinaryTableStudent(StaticStudent):
    """The static student reading its table as `binary` gives it back, trained through the signs (a straight-through
    estimator: the forward pass uses sign times the row's mean absolute value, the gradient reaches the table as
    it is), so the table learns to be binarised rather than being binarised after it learnt."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        table = self.embedding.weight
        scale = table.abs().mean(dim=1, keepdim=True)
        signs = torch.where(table >= 0, scale, -scale)
        table = table + (signs - table).detach()  # (vocab, dim): the binary table forward, the table backward
        return F.normalize(masked_mean(F.embedding(input_ids, table), attention_mask), dim=-1)


def trained_binary(run: Path, work: Path, epochs: int, lr: float) -> tuple[StaticStudent, float, float]:
    """The run's static student trained on its targets through a binary table; (the student with the binary table
    it ended with, validation fidelity before and after)."""
    summary, targets = open_run(run)
    entry = next(s for s in summary["students"] if s["name"] == "static")
    student = students.load(entry["path"])
    student.__class__ = BinaryTableStudent  # NOTE: the same weights and config, read through the signs
    config = TrainConfig(**{**StaticStudent.default_training, "epochs": epochs, "lr": lr})
    result = Trainer(student, targets, config, work, token_targets=TokenTargets.NONE).train(progress=True)
    with torch.no_grad():
        rows, _ = binary(student.embedding.weight.numpy())
        student.embedding.weight.copy_(torch.from_numpy(rows))
    student.__class__ = StaticStudent
    return student, result.start_fidelity, result.best_fidelity


VARIANTS: dict[str, Callable[[np.ndarray], Compressed]] = {
    "int8": lambda t: quantised(t, 8),
    "int4": lambda t: quantised(t, 4),
    "int2": lambda t: quantised(t, 2),
    "binary": binary,
    "binary-norm": lambda t: binary(t, keep_norm=True),
    "binary-rotated": binary_rotated,
    "binary-64": binary_blocks,
    "pca-256": lambda t: pca(t, 256),
    "pca-128": lambda t: pca(t, 128),
    "pca-128-int8": lambda t: pca(t, 128, 8),
    "pca-64-int8": lambda t: pca(t, 64, 8),
    "pca-48-int8": lambda t: pca(t, 48, 8),
    "pq-48": lambda t: product_quantised(t, 48),
    "pq-32": lambda t: product_quantised(t, 32),
    "pq-64": lambda t: product_quantised(t, 64),
    "kmeans-4096": lambda t: kmeans(t, 4096),
    "kmeans-2048": lambda t: kmeans(t, 2048),
}


def write_variants(run: Path, out: Path, names: list[str], trained: StaticStudent | None) -> dict[str, int]:
    """A run folder `out` with the run's static student and each variant of it as students (and `trained`, a binary
    table trained so, as "binary-trained"); bytes by name."""
    summary = read_summary(run)
    entry = next(s for s in summary["students"] if s["name"] == "static")
    student = students.load(entry["path"])
    table = student.embedding.weight.detach().numpy().copy()
    sizes = {"static": table.size * 4}
    entries = [{**entry, "path": str(out / "students" / "static")}]
    shutil.rmtree(out, ignore_errors=True)
    student.save(out / "students" / "static")
    counts = open_run(run)[1].token_id_counts(Split.TRAIN, minlength=table.shape[0])
    for name in names:
        head = name.removeprefix("int4-head-")
        rows, sizes[name] = by_frequency(table, counts, int(head)) if head.isdigit() else VARIANTS[name](table)
        with torch.no_grad():
            student.embedding.weight.copy_(torch.from_numpy(rows))
        student.save(out / "students" / name)
        entries.append({**entry, "name": name, "path": str(out / "students" / name)})
    if trained is not None:
        trained.save(out / "students" / "binary-trained")
        entries.append({**entry, "name": "binary-trained", "path": str(out / "students" / "binary-trained")})
        sizes["binary-trained"] = binary(table)[1]
    write_summary(out, {**summary, "students": entries})
    return sizes


def shipped_bytes(run: Path) -> dict[str, int]:
    """The bytes of each student folder of `run`, less the model card (README.md) that scoring writes into it."""
    sizes = {}
    for entry in read_summary(run)["students"]:
        card = Path(entry["path"]) / "README.md"
        sizes[entry["name"]] = folder_bytes(Path(entry["path"])) - (card.stat().st_size if card.is_file() else 0)
    return sizes


def score(run: Path, tasks: tuple[str, ...], sizes: dict[str, int], reference: str = "static") -> dict[str, Any]:
    """Score the students of `run` on `tasks`, print bytes and mean shares (also against `reference`'s), and
    write them to RUN/compress.json."""
    parsed = run_tasks(EvalSettings(tasks=list(tasks)), read_summary(run), run)
    results = score_run_tasks(run, parsed, "cpu", progress=True)
    shares = results["mean_share"]
    full = shares.get(reference, float("nan"))  # NOTE: a run without it prints its ratios as nan
    rows = [["variant", "stored MB", "mean share", f"of {reference}'s"]]
    for name, size in sizes.items():
        rows.append([name, f"{size / 2**20:.2f}", f"{100 * shares[name]:.2f}%", f"{100 * shares[name] / full:.2f}%"])
    click.echo("\n".join(aligned(rows)))
    record = {"bytes": sizes, "mean_share": shares, "tasks": results}
    (run / "compress.json").write_text(json.dumps(record, indent=2))
    return record


@click.command()
@click.option("--run", "run", default="runs/default", show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default="runs/compress-trials", show_default=True, type=click.Path(path_type=Path))
@click.option("--variants", default=",".join(VARIANTS), show_default=True)
@click.option("--tasks", multiple=True, default=["default"], show_default=True, metavar="SPEC")
@click.option(
    "--train-binary",
    "train_epochs",
    type=int,
    default=0,
    show_default=True,
    help="Also train the static student through a binary table for this many epochs on the run's targets.",
)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Its peak learning rate.")
@click.option("--shipped", type=click.Path(path_type=Path, file_okay=False),
              help="Score this run's students as they are (e.g. made by `distill compress`), no variants.")  # fmt: skip
def main(run: Path, out: Path, variants: str, tasks: tuple[str, ...], train_epochs: int, lr: float,
         shipped: Path | None) -> None:  # fmt: skip
    """Score the run's static student and each compressed variant of its table; bytes and mean shares."""
    logging.basicConfig(level=logging.WARNING)
    if shipped is not None:
        score(shipped, tasks, shipped_bytes(shipped))
        return
    trained = None
    if train_epochs:
        trained, before, after = trained_binary(run, out.with_name(out.name + "-train"), train_epochs, lr)
        click.echo(f"binary table trained {train_epochs} epochs: validation fidelity {before:.4f} -> {after:.4f}")
    sizes = write_variants(run, out, [v.strip() for v in variants.split(",") if v.strip()], trained)
    score(out, tasks, sizes)


if __name__ == "__main__":
    main()
