"""Print, for every supported family, how exactly the all-layers transformer student reproduces a tiny teacher.

    python -m tests.measure_families

Each teacher is built in memory (`tests.families`): the student against the teacher, the saved
student through `SentenceTransformer(path)`, and its ONNX fp32 export. The tests hold the same
figures to limits; this prints what they are (the README's table).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from distill.data.corpus import assign_splits
from distill.data.targets import build_targets
from distill.export.exporter import export_student
from students.layer_subset import SUPPORTED_FAMILIES
from students.transformer import TransformerStudent
from tests.conftest import SENTENCES
from tests.families import tiny_teacher


def corpus() -> list[str]:
    """The test sentences and their halves recombined (as the `corpus` fixture)."""
    words = [s.rstrip(".").split() for s in SENTENCES]
    mixed = [" ".join(a[: len(a) // 2] + b[len(b) // 2 :]) + "." for a in words for b in words if a is not b]
    return SENTENCES + mixed


def measure(name: str, texts: list[str], work: Path) -> str:
    teacher = tiny_teacher(name, texts)
    targets = build_targets(teacher, texts, assign_splits(texts), work / "cache")
    student = TransformerStudent.from_teacher(
        teacher, targets, layers=list(range(teacher.model.config.num_hidden_layers))
    )
    ours, theirs = student.encode(texts), teacher.sentence_vectors(texts)
    cosine = ((ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)).min()
    st = SentenceTransformer(str(student.save(work / "student")), device="cpu").encode(texts)
    parity = export_student(student, work / "export", name=name, texts=texts[:64])
    return (f"| {name} | {type(student.encoder).__name__} | {cosine:.6f} | {np.abs(ours - theirs).max():.1e} | "
            f"{np.abs(st - ours).max():.1e} | {parity['fp32']['max_abs_difference']:.1e} |")  # fmt: skip


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    texts = corpus()
    print("| family | student class | min cosine, all layers | max abs diff | SentenceTransformer(path) max diff "
          "| ONNX fp32 max diff |\n|---|---|---|---|---|---|")  # fmt: skip
    for name in SUPPORTED_FAMILIES:
        with tempfile.TemporaryDirectory() as work:
            print(measure(name, texts, Path(work)), flush=True)


if __name__ == "__main__":
    main()
