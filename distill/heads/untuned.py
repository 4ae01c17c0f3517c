"""The model a tuned head was tuned from, shipped beside the head's export for embeddings.

A head trained together with its model (`distill head train --tune`) is exported with that tuned model
(`distill.heads.export`, `distill.heads.tagger_export`), whose sentence vectors are no longer the teacher's. So
that the folder still gives embeddings in the teacher's space (`distill serve`'s `/v1/embeddings`,
`distill.runtime.embeddings_of`), the untuned model it was tuned from (head.json's "model") is written beside it
as `distill export` writes a student, and the export's config says what it holds:

    model.onnx, model_int8.onnx, ...   the tuned model with the head
    config.json                        "tune", "teacher_space": false, "embeddings": "embeddings" (null: not shipped)
    parity.json                        the head's figures, and under "embeddings" the untuned model's
    embeddings/                        the untuned model: an ordinary export folder

A frozen head's export is left as it is: its graph's vectors are its model's own.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill.errors import DistillError
from distill.export.exporter import PARITY_FILE, export_student
from distill.heads.models import load_model, teacher_student
from distill.io import read_json
from distill.runtime import CONFIG_FILE, EMBEDDINGS_DIR, HEAD_FILE, MODEL_FILES, TOKENIZER_FILE
from distill.runtime.vectors import BASIS_FILE, Basis
from distill.teacher.model import Teacher
from students.base import Student

if TYPE_CHECKING:
    from distill.heads.head import ClassifierHead

logger = logging.getLogger(__name__)


def add_untuned(head: ClassifierHead, directory: Path, *, texts: Sequence[str]) -> dict[str, Any]:
    """For a tuned `head` exported into `directory`: the untuned model in `directory/EMBEDDINGS_DIR`, and "tune",
    "teacher_space" and "embeddings" in its `config.json`; what goes into its parity.json ({} for a frozen head).

    `texts` are the untuned model's parity texts. A model that cannot be loaded any more (a student folder moved
    or deleted since the head was trained) is a loud warning, not an error: the export then holds no untuned model
    and says so ("embeddings": null), and `distill serve` refuses its `/v1/embeddings`.
    """
    if head.config.tune == "none":
        return {}
    model = _untuned_model(head.config.model)
    parity = None
    if model is not None:
        parity = export_untuned(model, directory / EMBEDDINGS_DIR, source=head.config.model, texts=texts)
    config = read_json(directory / CONFIG_FILE)
    # NOTE: the model trained with the head: its vectors left the teacher's space
    config.update(tune=head.config.tune, teacher_space=False, embeddings=EMBEDDINGS_DIR if model is not None else None)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return {"embeddings": parity}


def _untuned_model(name: str) -> Student | Teacher | Path | None:
    """The model a head was tuned from (its head.json's "model"), or None with a warning when it cannot be loaded."""
    try:
        if not name:
            raise DistillError("its head.json names none")
        return load_model(name)
    except (DistillError, OSError) as e:
        logger.warning("warning: the model the head was tuned from (%r) cannot be loaded (%s), so the export holds "
                       "no untuned model: `distill serve` of it will refuse POST /v1/embeddings, the tuned vectors "
                       "not being the teacher's; put that model back where head.json's \"model\" says and export "
                       "again, or serve the untuned student's own export for embeddings", name, e)  # fmt: skip
        return None


def run_basis(model: str) -> Basis | None:
    """The teacher's basis of the run a student folder `model` belongs to (`RUN/students/<name>`), as `distill export`
    writes it, so the untuned model's shorter vectors (`dimensions`) are cut as its own export's are; None when
    `model` is in no finished run or the run's targets are gone (then only full-length vectors are served)."""
    from distill.data.basis import teacher_basis
    from distill.runfolder import is_run
    from distill.training.finished import open_run

    run = next((folder for folder in Path(model).parents[:2] if is_run(folder)), None)
    if run is None:
        return None
    try:
        return teacher_basis(open_run(run)[1])
    except (DistillError, OSError) as e:
        logger.warning("the untuned model gets no basis for shorter vectors (`dimensions`): %s", e)
        return None


def export_untuned(
    model: Student | Teacher | Path, directory: Path, *, source: str, texts: Sequence[str]
) -> dict[str, Any]:
    """Write `model`, loaded from `source`, to `directory` as `distill export` does (a teacher copied into a
    transformer student with all its layers, an export folder copied as it is); a student is named as its folder
    and gets the basis of the run it belongs to (`run_basis`). Its parity figures."""
    if isinstance(model, Path):
        directory.mkdir()
        return copy_export(model, directory)
    if isinstance(model, Teacher):
        vectors = model.sentence_vectors(list(texts))  # (texts, dim): the int8 graph's fidelity is measured on them
        return export_student(teacher_student(model), directory, name=model.name, texts=texts, teacher_vectors=vectors)
    basis = run_basis(source)
    usable = basis if basis is not None and basis.dim == model.dim else None  # NOTE: a narrower student has its own
    return export_student(model, directory, name=Path(source).name, texts=texts, basis=usable)


def copy_export(source: Path, directory: Path) -> dict[str, Any]:
    """Copy the export in `source` to `directory`; its parity figures (none if it has no parity.json).

    The teacher's basis (`BASIS_FILE`) comes too when it has one: the copy's vectors are the same, and so are the
    shorter vectors cut from them.
    """
    if (source / HEAD_FILE).is_file():
        raise DistillError(f"{str(source)!r} already holds a head ({HEAD_FILE}); export the new head with its "
                           "student or with an export without one")  # fmt: skip
    for file in [*MODEL_FILES.values(), TOKENIZER_FILE, CONFIG_FILE]:
        if not (source / file).is_file():
            raise DistillError(f"{str(source)!r} is not an exported student: {file} is missing")
        shutil.copy2(source / file, directory / file)
    if (source / BASIS_FILE).is_file():
        shutil.copy2(source / BASIS_FILE, directory / BASIS_FILE)
    return read_json(source / PARITY_FILE) if (source / PARITY_FILE).is_file() else {}
