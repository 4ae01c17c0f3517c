"""The Python front door: `distill(teacher, corpus, students=[...])`, as thin as model2vec's.

    from distill import distill

    run = distill("sentence-transformers/all-MiniLM-L6-v2", "corpus.txt", students=["static", "transformer"])
    run["static"].encode(["a query", "a document"])   # (2, 384) float32, unit length
    run.summary.students[0].test_fidelity            # what `distill run` prints, as numbers
    run.export()                                     # ONNX fp32 + int8 of each, parity-checked

`distill` only resolves and loads (the teacher by name or folder, the corpus by name, path or
list of texts); `distill_from_model` is the core, on a `Teacher` already in memory, that tests
drive with a tiny model. Both train through `distill.training.pipeline`, as `distill run` does,
so a run folder made here is one `distill eval`, `distill export` and `distill serve` read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import students as student_kinds
from distill import distributed
from distill.errors import DistillError
from distill.training.config import RunConfig, build_config, recipe_values
from distill.training.pipeline import RunSummary, load_teacher, run, run_from_model
from distill.training.rerun import check_output

if TYPE_CHECKING:
    from distill.teacher.model import Teacher
    from students.base import Student

Students = Sequence[str] | Mapping[str, Mapping[str, Any]]
PROJECT_LOGGERS = ("distill", "students", "eval")  # the packages whose log lines a run shows


@dataclass
class Distilled:
    """A finished run: each trained student (loaded back from its saved folder) and the run's summary."""

    students: dict[str, Student]
    summary: RunSummary

    @property
    def path(self) -> Path:
        """The run folder (`students/<name>/`, `summary.json`, later `export/` and `report.md`)."""
        return Path(self.summary.run_dir)

    def __getitem__(self, name: str) -> Student:
        if name not in self.students:
            raise KeyError(f"no student {name!r} in this run; it has: {', '.join(self.students)}")
        return self.students[name]

    def export(self, *, fuse: bool = False) -> dict[str, Path]:
        """Every student to ONNX fp32 and int8 under `path/export/<name>/`, parity-checked, as `distill export`."""
        from distill.export.exporter import EXPORT_DIR
        from distill.export.run import export_run

        export_run(self.path, fuse=fuse)
        return {name: self.path / EXPORT_DIR / name for name in self.students}


def distill(
    teacher: str | Path | None = None,
    corpus: str | Path | Sequence[str] | None = None,
    *,
    students: Students | None = None,
    output: str | Path = "runs/distill",
    config: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    **settings: Any,
) -> Distilled:
    """Distill `teacher` on `corpus` into `students`, each trained, tested and saved under `output`.

    With no `config`, the default recipe (`distill run`'s and `make distill`'s: three students, spans, words and
    bags added to the corpus); every argument given changes that setting alone. Into an `output` that holds a run,
    the students are added to it; one it already holds needs `resume` or `overwrite` (as `distill run`).

    teacher:  a Hugging Face name or a local folder [default: sentence-transformers/all-MiniLM-L6-v2,
              packaged, offline].
    corpus:   a list of texts, a .txt / .jsonl / .csv / .parquet file, a folder of .txt files, a
              Hugging Face dataset name, or "gensim" [the default].
    students: kinds to train ("static", "transformer", "tokengen"), or a mapping of name to that
              student's own settings, e.g. {"transformer": {"layers": [0, 5], "epochs": 3}}
              [default: the config file's, else the default recipe's: static, transformer, tokengen].
    config:   a TOML file as `distill run --config` reads, in place of the default recipe; the arguments here win.
    settings: any other `distill run` setting, with underscores: epochs=3, augment=["spans"],
              device="cuda", precision="bf16", limit=10_000, cache_dir="runs/cache", ...
    """
    values = {"teacher": None if teacher is None else str(teacher), "output": str(output), **settings}
    texts = None
    if corpus is not None and not isinstance(corpus, str | Path):
        texts = list(corpus)
        values["corpus"] = f"a list of {len(texts)} texts"  # NOTE: what the summary records as the corpus
    elif corpus is not None:
        values["corpus"] = str(corpus)
    run_config = _config(values, students, config)
    with _logged(progress):
        if texts is None:
            summary = run(run_config, resume=resume, overwrite=overwrite, progress=progress)
        else:
            check_output(run_config, resume=resume, overwrite=overwrite)  # NOTE: before the teacher loads
            distributed.init(run_config.placement().device.type)
            summary = run_from_model(load_teacher(run_config), texts, run_config, resume=resume, overwrite=overwrite,
                                     progress=progress)  # fmt: skip
    return _loaded(summary)


@contextmanager
def _logged(progress: bool) -> Iterator[None]:
    """The run's log lines on stderr while it runs, as `distill run` shows them beside its progress bars, unless the
    caller set up logging (a root handler) or asked for no progress."""
    if not progress or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    loggers = [logging.getLogger(name) for name in PROJECT_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def distill_from_model(
    teacher: Teacher,
    texts: Sequence[str],
    *,
    students: Students = ("static",),
    output: str | Path = "runs/distill",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **settings: Any,
) -> Distilled:
    """The core of `distill`, on a teacher already loaded (or built in memory) and a list of texts; its settings
    start from the run config's own defaults (one static student, no augmentation), not the default recipe."""
    run_config = build_config({}, _values({"output": str(output), **settings}, students))
    return _loaded(run_from_model(teacher, list(texts), run_config, resume=resume, overwrite=overwrite,
                                  progress=progress))  # fmt: skip


def _config(values: dict[str, Any], students: Students | None, config_file: str | Path | None) -> RunConfig:
    """A `RunConfig` as `distill run` builds one: the file's values (or the default recipe) under these (which win)."""
    return build_config(recipe_values(config_file), _values(values, students))


def _values(values: dict[str, Any], students: Students | None) -> dict[str, Any]:
    """The arguments given, as `build_config`'s flags: a student's settings go over its table in the file."""
    if isinstance(students, str):
        raise DistillError(f"students must be a list of names, not the string {students!r}; try [{students!r}]")
    values = {k: v for k, v in values.items() if v is not None}
    if isinstance(students, Mapping):
        values.update({name: dict(options) for name, options in students.items()})
    if students is not None:
        values["students"] = list(students)
    return values


def _loaded(summary: RunSummary) -> Distilled:
    """Each saved student read back from its folder: what `.encode` gives is what was saved and will ship."""
    return Distilled({s.name: student_kinds.load(s.path) for s in summary.students}, summary)
