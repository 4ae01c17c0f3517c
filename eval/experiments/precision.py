"""The teacher's extraction speed in each precision, on a run's own test texts.

    python -m eval.experiments.precision --run runs/default [--texts 1024] [--device auto]

Prints texts per second for fp32, bf16 and fp16 (each timed twice, the better pass counts) and
each precision's mean and minimum cosine to the fp32 vectors: what `--precision` buys and costs.
"""

from __future__ import annotations

import logging
import time

import click
import numpy as np

from distill.data.corpus import Split
from distill.device import Placement, Precision
from distill.errors import DistillError
from distill.training.finished import open_run, run_teacher


def measure(run_dir: str, texts: int, device: str, batch_size: int) -> list[str]:
    summary, targets = open_run(run_dir)
    sample, _ = targets.texts_and_vectors(Split.TEST, texts)
    teacher = run_teacher(summary, device)
    lines, reference = [], None
    for precision in Precision:
        try:
            teacher.place(Placement.resolve(device, precision.value))
            teacher.sentence_vectors(sample[:batch_size], batch_size)  # warm-up
        except (DistillError, RuntimeError) as e:  # NOTE: fp16 autocast is missing on some CPU builds
            lines.append(f"{precision.value}: not available here ({str(e).splitlines()[0]})")
            continue
        seconds, vectors = [], None
        for _ in range(2):
            start = time.perf_counter()
            vectors = teacher.sentence_vectors(sample, batch_size)
            seconds.append(time.perf_counter() - start)
        reference = vectors if reference is None else reference
        cosine = (vectors * reference).sum(axis=1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
        lines.append(f"{precision.value}: {len(sample) / min(seconds):.1f} texts/s on {teacher.placement.device}, "
                     f"cosine to fp32 mean {cosine.mean():.5f} min {cosine.min():.5f}")  # fmt: skip
    return lines


@click.command()
@click.option("--run", "run_dir", default="runs/default", show_default=True, help="A finished run (its teacher).")
@click.option("--texts", type=click.IntRange(min=1), default=1024, show_default=True, help="Test texts to embed.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
def main(run_dir: str, texts: int, device: str, batch_size: int) -> None:
    """The teacher's extraction throughput in fp32, bf16 and fp16 on a run's test texts."""
    logging.basicConfig(level=logging.WARNING)
    try:
        lines = measure(run_dir, texts, device, batch_size)
    except DistillError as e:
        raise click.ClickException(str(e)) from e
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
