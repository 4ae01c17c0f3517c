"""Student architectures, one module each, all behind `students.base.Student`.

`students.load(path)` gives back any saved student; `student_class(name)` finds one by name.
A module in this package that defines a `Student` subclass with a `kind` is found by itself.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from distill.errors import DistillError
from distill.io import read_json
from students.base import CONFIG_FILE, Student


def available() -> dict[str, type[Student]]:
    """Every student kind, by name."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    found: dict[str, type[Student]] = {}
    pending = list(Student.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "kind" in cls.__dict__:
            found[cls.kind] = cls
    return found


def student_class(name: str) -> type[Student]:
    kinds = available()
    if name not in kinds:
        raise DistillError(f"unknown student {name!r}; choose from: {', '.join(sorted(kinds))}")
    return kinds[name]


def load(path: str | Path) -> Student:
    """Load a saved student folder (`student.json`, `model.safetensors`, `tokenizer.json`)."""
    path = Path(path)
    config = path / CONFIG_FILE
    if not config.is_file():
        raise DistillError(f"{str(path)!r} is not a saved student (no {CONFIG_FILE} in it)")
    return student_class(read_json(config)["kind"]).load(path)


__all__ = ["Student", "available", "load", "student_class"]
