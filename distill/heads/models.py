"""The models a head sits on: loaded by name, the teacher as a student, and a tuned head's own model.

A frozen head names the model it was trained on (`head.json`'s "model"); a head tuned together with
its model (`distill head train --tune`) carries that model in its folder, under `TUNED_MODEL_DIR`,
and is only ever run with it:

    model = model_of(head_dir, head)  # "HEAD/model" for a tuned head, else the model it names
    student = as_student(load_model(model), model)  # a teacher becomes a transformer student with all its layers
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from distill.errors import DistillError
from distill.runtime import CONFIG_FILE, MODEL_FILES
from distill.teacher.model import Teacher
from students.base import CONFIG_FILE as STUDENT_CONFIG
from students.base import Student
from students.transformer import TransformerStudent

if TYPE_CHECKING:
    from distill.heads.head import ClassifierHead

TUNED_MODEL_DIR = "model"  # inside a tuned head's folder: the student trained together with the head


def load_model(model: str) -> Student | Teacher | Path:
    """A saved student, an export folder (its path) or a teacher, tried in that order (as `head_data.encoder_for`)."""
    import students

    path = Path(model)
    if (path / STUDENT_CONFIG).is_file():
        return students.load(path)
    if (path / CONFIG_FILE).is_file() and (path / MODEL_FILES["fp32"]).is_file():
        return path
    return Teacher.load(model)


def teacher_student(teacher: Teacher) -> TransformerStudent:
    """The teacher as a transformer student with all its layers, which reproduces its vectors."""
    if not teacher.normalize:
        raise DistillError(f"teacher {teacher.name!r} does not L2-normalise its vectors and an exported model "
                           "always does; train the head on a student of it and export that")  # fmt: skip
    layers = list(range(teacher.model.config.num_hidden_layers))
    # NOTE: a student takes only the vectors' dimension from its targets; a copy of the teacher needs no targets.
    shape = SimpleNamespace(dim=teacher.dim)
    try:
        return TransformerStudent.from_teacher(teacher, shape, layers=layers)  # type: ignore[arg-type]
    except (AttributeError, KeyError) as e:
        raise DistillError(f"teacher {teacher.name!r} cannot be copied into a transformer student for export "
                           f"({e}); train the head on a student of it and export that") from e  # fmt: skip


def as_student(model: Student | Teacher | Path, name: str) -> Student:
    """What a tuned head trains: a student as it is, the teacher copied into a transformer student; not an export."""
    if isinstance(model, Path):
        raise DistillError(f"{name!r} is an ONNX export, which cannot be trained: tune its student folder or the "
                           "teacher instead")  # fmt: skip
    return teacher_student(model) if isinstance(model, Teacher) else model


def model_of(head_dir: str | Path, head: ClassifierHead, model: str | None = None) -> str:
    """The model to run `head` (saved in `head_dir`) with: `model` if given, else the one it was trained on.

    A tuned head runs only with its own tuned model; another `model` for it is a DistillError.
    """
    if head.config.tune == "none":
        if not (model or head.config.model):
            raise DistillError(f"the head in {str(head_dir)!r} does not say which model it was trained on; pass "
                               "--model")  # fmt: skip
        return model or head.config.model
    own = Path(head_dir) / TUNED_MODEL_DIR
    if model and Path(model).resolve() != own.resolve():
        raise DistillError(f"the head in {str(head_dir)!r} was tuned together with its model ({own}); leave --model "
                           "out to use it")  # fmt: skip
    if not (own / STUDENT_CONFIG).is_file():
        raise DistillError(f"the tuned head in {str(head_dir)!r} has lost its model ({own}); train it again")
    return str(own)
