"""`distill export`: every student of a finished run to `RUN/export/<student>/` (see `distill.export.exporter`), and a
transformer student's `onnx/` folder for sentence-transformers' ONNX backend (see `distill.export.st_onnx`).

Every export of a run gets the same teacher's basis (`distill.data.basis.teacher_basis`, fitted once on the run's
training targets), so a student's shorter vectors stay comparable with its teacher's and with the other students'."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from distill.cards import write_run_cards
from distill.data.basis import teacher_basis
from distill.data.corpus import Split
from distill.export.exporter import EXPORT_DIR, PARITY_FILE, export_student
from distill.export.st_onnx import export_st_onnx
from distill.io import write_json
from students.transformer import TransformerStudent

logger = logging.getLogger(__name__)


def export_run(run_dir: str | Path, *, check_texts: int = 512, fuse: bool = False) -> dict[str, dict[str, Any]]:
    """Export every student of a finished run to `run_dir/export/<student>/`; parity figures by student."""
    import students
    from distill.training.finished import open_run  # NOTE: here, so the runtime's importers never load training

    summary, targets = open_run(run_dir)
    texts, teacher_vectors = targets.texts_and_vectors(Split.TEST, check_texts)
    basis = teacher_basis(targets)
    results = {}
    for entry in summary["students"]:
        logger.info("exporting %s", entry["name"])
        student = students.load(entry["path"])
        out = Path(run_dir) / EXPORT_DIR / entry["name"]
        parity = export_student(student, out, name=entry["name"], texts=texts, teacher_vectors=teacher_vectors,
                                fuse=fuse, basis=basis)  # fmt: skip
        if isinstance(student, TransformerStudent):  # sentence-transformers' ONNX backend reads the student's folder
            parity["sentence_transformers_onnx"] = export_st_onnx(student, entry["path"], texts)
            write_json(out / PARITY_FILE, parity)
        results[entry["name"]] = parity
    write_run_cards(run_dir)  # each student's and export's README.md, with the figures measured here
    return results
