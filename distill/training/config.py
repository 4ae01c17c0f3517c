"""Run configuration: one typed dataclass, filled from a TOML file whose keys are the CLI flag names."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib
import torch

from distill import distributed
from distill.data.augment import parse as parse_augment
from distill.data.corpus import DEFAULT_CORPUS
from distill.data.targets import CHUNK_TEXTS, TokenTargets
from distill.device import DEVICES, Placement
from distill.errors import DistillError
from distill.teacher.model import DEFAULT_TEACHER
from distill.training.settings import TrainConfig
from students import student_class

TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
INDEXES = ("own", "teacher")  # `index`: what the students' queries search
DOCUMENT_AUGMENT = ("spans", "questions")  # query-shaped text, made by default from a corpus of documents
TEACHER_INDEX_WEIGHT = 1.0  # the index loss of a student trained for a teacher's index (`index = "teacher"`)
# The default recipe: what `distill run` and `distill(...)` train without a config file, and what `make distill`
# trains (configs/default.toml holds the same, commented; a test keeps the two alike).
DEFAULT_RECIPE: dict[str, Any] = {
    "teacher": DEFAULT_TEACHER,
    "corpus": DEFAULT_CORPUS,
    "output": "runs/default",
    "cache-dir": "runs/cache",
    "students": ["static", "transformer", "tokengen"],
    "augment": ["spans", "words", "bags"],
    "static": {"init": "context", "epochs": 6},
    "transformer": {},
    "tokengen": {"encoder": "ngram"},
}


@dataclass
class RunConfig:
    """Everything `distill run` needs. `students` maps a student name to its own settings
    (its config fields and any training field it overrides)."""

    teacher: str = DEFAULT_TEACHER
    prompt: str | None = None  # a name from the teacher's own prompts (default: its default_prompt_name)
    prompt_text: str | None = None  # a prompt given as text; wins over `prompt`
    trust_remote_code: bool = False  # let transformers run the code a teacher's folder ships
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or mps: extraction and training
    precision: str = "fp32"  # fp32, bf16 or fp16 (autocast) for the teacher's forward pass and for training
    corpus: str = DEFAULT_CORPUS
    text_column: str = "text"
    title_column: str = "title"  # a table-like corpus's title column, put before each text where it is there
    documents: bool = False  # each file of a corpus folder is one text (a document), not each line
    limit: int | None = None  # use at most this many corpus texts
    max_length: int | None = None  # default: the teacher's own
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    output: str = "runs/default"
    cache_dir: str = "runs/cache"
    passages: str = "whole"  # corpus texts past the teacher's max length: kept whole (truncated) or cut at sentences
    mix: str | None = None  # a corpus of general text mixed in (as `corpus`: "gensim", a file...), so a student of
    # a collection stays good on text unlike it
    mix_share: float = 0.5  # the share of the mixed text among the corpus's texts and it (before augmentation)
    index: str = "own"  # the index the students' queries will search: their own, or one the teacher built
    # new text forms from the training texts: spans, words, ... (None: spans and questions where documents are cut
    # into passages, which a retrieval corpus asks for with queries; else none)
    augment: list[str] | str | None = None
    token_targets: str = "auto"  # auto, store, online or none: where the teacher's token vectors come from
    teacher_batch_size: int = 64  # texts a batch where the teacher embeds small sets (held-out review texts)
    teacher_batch_tokens: int | None = None  # padded tokens a batch in target extraction (default: by device)
    chunk_texts: int = CHUNK_TEXTS  # texts a targets cache chunk: the unit of resuming and of sharing out by rank
    processes: int = 1  # processes on this machine (through torchrun); torchrun itself says it when it starts them
    # task specs to score once training ends (`distill run --tasks`; eval.suite says what a spec is). NOTE: the CLI
    # scores them, a floor above both training and eval: the pipeline never reads this.
    tasks: list[str] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)  # training settings shared by all students
    students: dict[str, dict[str, Any]] = field(default_factory=lambda: {"static": {}})

    def __post_init__(self) -> None:
        if not self.students:
            raise DistillError("no students to train; name at least one (for example --students static)")
        if not str(self.corpus).strip():
            raise DistillError("no corpus: give one with --corpus (a file, a folder, a BEIR folder, or 'gensim')")
        if self.limit is not None and self.limit <= 0:
            raise DistillError(f"limit must be positive, not {self.limit}")
        if self.device not in DEVICES:
            raise DistillError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        Placement.resolve("cpu", self.precision)  # NOTE: checks the name; the device is resolved when the run starts
        if self.teacher_batch_size <= 0:
            raise DistillError(f"teacher-batch-size must be positive, not {self.teacher_batch_size}")
        if self.teacher_batch_tokens is not None and self.teacher_batch_tokens <= 0:
            raise DistillError(f"teacher-batch-tokens must be positive, not {self.teacher_batch_tokens}")
        if self.chunk_texts <= 0:
            raise DistillError(f"chunk-texts must be positive, not {self.chunk_texts}")
        if self.processes <= 0:
            raise DistillError(f"processes must be a positive whole number, not {self.processes}")
        if self.passages not in ("whole", "cut"):
            raise DistillError(f"passages must be whole or cut, not {self.passages!r}")
        if not 0 < self.mix_share < 1:
            raise DistillError(f"mix-share must be between 0 and 1, not {self.mix_share}")
        if self.index not in INDEXES:
            raise DistillError(f"index must be one of {', '.join(INDEXES)}, not {self.index!r}")
        if self.augment is None:
            self.augment = list(DOCUMENT_AUGMENT) if self.passages == "cut" else []
        self.augment = [a.value for a in parse_augment(self.augment)]
        self.tasks = [self.tasks] if isinstance(self.tasks, str) else list(self.tasks)
        if isinstance(self.token_targets, bool):  # NOTE: configs of earlier versions said true / false
            self.token_targets = "store" if self.token_targets else "none"
        if self.token_targets not in [t.value for t in TokenTargets]:
            raise DistillError(f"token-targets must be one of {', '.join(t.value for t in TokenTargets)}, "
                               f"not {self.token_targets!r}")  # fmt: skip
        for name in self.students:
            student_class(self.kind_of(name))
            self.train_config_for(name, {})  # validates the settings before any work starts

    def placement(self) -> Placement:
        """The device and precision of this run, resolved on this machine (a missing GPU is a user's error).

        Under several processes each takes the GPU of its local rank.
        """
        placement = Placement.resolve(self.device, self.precision)
        if placement.device.type == "cuda" and distributed.launched():
            return Placement(torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))), placement.precision)
        return placement

    def batch_tokens(self, placement: Placement) -> int:
        """Padded tokens a batch in target extraction.

        NOTE: 2,048 was the fastest measured on 2 CPU cores (see Teacher.token_batches); 16,384
        on a GPU is not measured here (no GPU was lent), only sized to keep one busy.
        """
        if self.teacher_batch_tokens is not None:
            return self.teacher_batch_tokens
        return 2048 if placement.device.type == "cpu" else 16384

    def uses_token_vectors(self) -> bool:
        """Whether any student learns from the teacher's token vectors (a token loss, a table made in context)."""
        for name in self.students:
            cls = student_class(self.kind_of(name))
            train = self.train_config_for(name, cls.default_training)
            if cls.uses_token_vectors(self.student_options(name), train.token_loss_weight):
                return True
        return False

    @property
    def run_dir(self) -> Path:
        return Path(self.output)

    def train_config_for(self, student: str, defaults: dict[str, Any]) -> TrainConfig:
        """The shared training settings, under the student's own defaults and overrides (and, for a student of a
        teacher's index, that index's loss unless a weight is given)."""
        own = {k: v for k, v in self.students.get(student, {}).items() if k in TRAIN_FIELDS}
        if self.index == "teacher":
            defaults = {**defaults, "index_weight": TEACHER_INDEX_WEIGHT}
        try:
            return TrainConfig(**{**defaults, **self.train, **own})
        except TypeError as e:
            raise DistillError(f"bad training setting: {e}") from e

    def kind_of(self, student: str) -> str:
        """The student's architecture: its `kind` setting, or its name (so two variants of one kind can train)."""
        return str(self.students.get(student, {}).get("kind", student))

    def student_options(self, student: str) -> dict[str, Any]:
        return {k: v for k, v in self.students.get(student, {}).items() if k not in TRAIN_FIELDS | {"kind"}}


def recipe_values(config_file: str | Path | None) -> dict[str, Any]:
    """The settings a run starts from: the TOML file given, else the default recipe."""
    return read_toml(config_file) if config_file else copy.deepcopy(DEFAULT_RECIPE)


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> RunConfig:
    """A `RunConfig` from a TOML file's values under the flags the user gave (flags win, a training flag over a
    student's table in the file too: `--epochs 1` is one epoch for every student)."""
    # NOTE: a table's name is a student's name, kept as written ("static-wide"); setting names take - or _
    given = {k if isinstance(v, dict) else _key(k): v for k, v in flag_values.items() if v is not None}
    overridden = {k for k, v in given.items() if not isinstance(v, dict) and k in TRAIN_FIELDS}
    values: dict[str, Any] = {}
    for key, value in file_values.items():
        if isinstance(value, dict):
            values[key] = {_key(k): v for k, v in value.items() if _key(k) not in overridden}
        else:
            values[_key(key)] = value
    for key, value in given.items():
        values[key] = (
            {**values.get(key, {}), **{_key(k): v for k, v in value.items()}} if isinstance(value, dict) else value
        )
    run_fields = {f.name for f in dataclasses.fields(RunConfig)} - {"train", "students"}
    students = values.pop("students", None)
    if isinstance(students, str):
        students = [s.strip() for s in students.split(",") if s.strip()]
    twice = sorted(name for name, count in Counter(students or []).items() if count > 1)
    if twice:
        raise DistillError(f"students names {', '.join(twice)} more than once; name each student once (two "
                           "variants of one kind take two names and a kind: see docs/students.md)")  # fmt: skip
    sections = {name: {_key(k): v for k, v in values.pop(name, {}).items()} for name in list(values)
                if isinstance(values[name], dict)}  # fmt: skip
    unknown = set(values) - run_fields - TRAIN_FIELDS
    if unknown:
        raise DistillError(f"unknown setting(s): {', '.join(sorted(k.replace('_', '-') for k in unknown))}")
    train = {k: values.pop(k) for k in list(values) if k in TRAIN_FIELDS}
    names = students if students is not None else (list(sections) or ["static"])
    return RunConfig(**values, train=train, students={name: sections.get(name, {}) for name in names})


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"config file {str(path)!r} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise DistillError(f"config file {str(path)!r} is not valid TOML: {e}") from e


def _key(name: str) -> str:
    return name.replace("-", "_")
