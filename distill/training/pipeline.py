"""The whole job: teacher and corpus to cached targets, then each student trained, tested and saved.

`run(config)` only resolves and loads; `run_from_model(teacher, texts, config)` is the core that
tests drive with a tiny in-memory teacher.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill import distributed
from distill.cards import write_run_cards
from distill.data.augment import Augment, augmented, vocabulary_words
from distill.data.augment import parse as parse_augment
from distill.data.corpus import (
    DOCUMENT_CHARS,
    TEXT_CHARS,
    Split,
    assign_splits,
    check_corpus,
    cut_at_sentences,
    iter_corpus,
    text_fractions,
)
from distill.data.domains import other_domain_texts
from distill.data.targets import (
    Targets,
    TokenTargets,
    build_targets,
    cache_key,
    choose_token_targets,
    estimate_token_bytes,
    store_texts,
    targets_root,
)
from distill.data.textstore import TextStore, ingest, write_store
from distill.errors import DistillError
from distill.runfolder import is_run, read_summary, write_summary
from distill.teacher.model import Teacher, resolve_teacher
from distill.teacher.tokens import Speller
from distill.training.config import RunConfig
from distill.training.rerun import check_output, check_targets, kept_students, target_settings
from distill.training.trainer import Trainer, TrainResult, fidelity, token_fidelity
from students import student_class

logger = logging.getLogger(__name__)

TEST_TEXTS = 50_000  # a student's test fidelity is measured on at most this many texts of the test split
FIDELITY_FLOOR = 0.5  # a student whose validation fidelity ends below this is flagged in the summary


@dataclass
class StudentSummary:
    name: str
    path: str
    params: int
    bytes: int
    test_fidelity: float
    reviews_fidelity: float  # on short movie reviews, text unlike the default corpus
    valid_fidelity: float
    train_seconds: float  # building it from the teacher (the token generator's fit included) and training
    epochs: int
    test_token_fidelity: float | None = None  # mean cosine of token vectors, for students that give them
    metrics: dict[str, float] = field(default_factory=dict)  # what a student measured of itself while built
    start_fidelity: float = float("nan")  # validation fidelity as built from the teacher, before training
    warnings: list[str] = field(default_factory=list)  # what the user should know about this student
    other_domain: dict[str, float] = field(default_factory=dict)  # fidelity on each held-out set of other forms
    other_domain_fidelity: float = float("nan")  # their mean, each set counted once
    matryoshka: list[int] = field(default_factory=list)  # the prefix dims it was trained to keep (none: off)


@dataclass
class RunSummary:
    run_dir: str
    texts: dict[str, int]
    teacher: str = ""
    max_length: int = 0
    targets: str = ""  # the cached targets folder the students were trained and tested on
    prompt: str = ""  # the text put before every text, for the teacher and every student
    trust_remote_code: bool = False
    device: str = "cpu"  # where the targets were made and the students trained
    precision: str = "fp32"  # the autocast precision of the teacher's forward pass and of training
    stage_seconds: dict[str, float] = field(default_factory=dict)
    token_targets: str = "store"  # where the token vectors came from: store, online or none
    processes: int = 1
    corpus: str = ""  # the corpus as the run was given it
    collection_texts: int | None = None  # the corpus's own texts (passages), first in the targets' texts
    index: str = "own"  # the index the students were trained to search: their own, or the teacher's
    settings: dict[str, Any] = field(default_factory=dict)  # the settings that shaped the targets (`rerun`)
    targets_key: str = ""  # the teacher, texts and split of the targets: students of one run share them
    students: list[StudentSummary] = field(default_factory=list)


class Stopwatch:
    """Times named stages into a dict."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def stage(self, name: str) -> _Stage:
        return _Stage(self.seconds, name)


class _Stage:
    def __init__(self, seconds: dict[str, float], name: str) -> None:
        self.seconds, self.name = seconds, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self.name] = round(self.seconds.get(self.name, 0.0) + time.perf_counter() - self.start, 2)


def load_store(config: RunConfig, progress: bool = False) -> TextStore:
    """The cleaned corpus as a text store in the cache: read once by rank 0, streamed, never one Python list."""
    root = None
    if distributed.group().is_main:
        check_corpus(config.corpus, config.text_column, title_column=config.title_column or None,
                     documents=config.documents)  # fmt: skip
        if config.mix:
            check_corpus(config.mix, config.text_column)
        texts = iter_corpus(config.corpus, config.text_column, config.limit, title_column=config.title_column or None,
                            documents=config.documents)  # fmt: skip
        # NOTE: a text to be cut into passages keeps its length (up to DOCUMENT_CHARS); else it is cut to TEXT_CHARS
        chars = DOCUMENT_CHARS if config.passages == "cut" else TEXT_CHARS
        store, _stats = ingest(texts, Path(config.cache_dir), max_chars=chars, progress=progress)
        if not len(store):
            raise DistillError(f"corpus {config.corpus!r} has no usable text (every line is empty)")
        root = store.root
    return TextStore.open(distributed.broadcast(root))


def load_inputs(config: RunConfig, watch: Stopwatch, progress: bool = False) -> tuple[Teacher, TextStore]:
    """The teacher and the cleaned corpus texts."""
    resolve_teacher(config.teacher)  # NOTE: a wrong teacher path fails before the corpus is read
    with watch.stage("load corpus"):
        texts = load_store(config, progress)
    with watch.stage("load teacher"):
        teacher = load_teacher(config)
    return teacher, texts


def load_teacher(config: RunConfig) -> Teacher:
    """The run's teacher, on its device and in its precision."""
    teacher = Teacher.load(config.teacher, max_length=config.max_length, prompt_name=config.prompt,
                           prompt_text=config.prompt_text, trust_remote_code=config.trust_remote_code)  # fmt: skip
    return teacher.place(config.placement())


def check_students(teacher: Teacher, config: RunConfig) -> None:
    """Refuse, before the teacher's targets are built, a student that cannot be made from this teacher."""
    for name in config.students:
        student_class(config.kind_of(name)).check_teacher(teacher, **config.student_options(name))


def prepare(config: RunConfig, watch: Stopwatch, progress: bool = False) -> tuple[Teacher, Targets]:
    """Load the teacher and corpus and build (or reuse) the targets."""
    distributed.init(config.placement().device.type)
    teacher, texts = load_inputs(config, watch, progress)
    return teacher, targets_from_model(teacher, texts, config, watch, progress)


def token_targets_mode(teacher: Teacher, texts: TextStore, config: RunConfig) -> TokenTargets:
    """The run's `--token-targets`, `auto` resolved by corpus size and device, and said in the log."""
    requested = TokenTargets(config.token_targets)
    stored = estimate_token_bytes(teacher, texts) if requested is TokenTargets.AUTO else 0.0
    Path(config.cache_dir).mkdir(parents=True, exist_ok=True)
    mode, why = choose_token_targets(requested, needed=config.uses_token_vectors(),
                                     device_type=teacher.placement.device.type, stored_bytes=stored,
                                     free_bytes=shutil.disk_usage(config.cache_dir).free)  # fmt: skip
    logger.info("token targets: %s (%s)", mode.value, why)
    return mode


def targets_from_model(
    teacher: Teacher, texts: Sequence[str] | TextStore, config: RunConfig, watch: Stopwatch, progress: bool
) -> Targets:
    if not isinstance(texts, TextStore):
        texts = store_texts(texts, Path(config.cache_dir))
    texts = with_passages(texts, config, teacher)
    collection = len(texts)
    texts = with_mix(texts, config)
    split = assign_splits(texts, config.valid_fraction, config.test_fraction, config.split_seed)
    texts, split = with_augmented(texts, split, config, teacher)
    mode = token_targets_mode(teacher, texts, config)
    with watch.stage("targets"):
        targets = build_targets(teacher, texts, split, Path(config.cache_dir), token_vectors=mode is TokenTargets.STORE,
                                batch_tokens=config.batch_tokens(teacher.placement), chunk_texts=config.chunk_texts,
                                progress=progress)  # fmt: skip
    targets.token_mode = mode
    targets.collection_texts = collection
    return targets


def with_mix(texts: TextStore, config: RunConfig) -> TextStore:
    """The corpus with general text after it (`config.mix`), as `config.mix_share` of the two together.

    The general texts are taken in an order drawn from a hash of each, so a run is the same for the same corpora.
    Where fewer are there than the share asks, all of them are taken, and the share reached is said.
    """
    if not config.mix:
        return texts
    root = None
    wanted = round(len(texts) * config.mix_share / (1 - config.mix_share))
    if distributed.group().is_main:
        general = [t for t in (" ".join(t.split()) for t in iter_corpus(config.mix, config.text_column)) if t]
        order = np.argsort(text_fractions(general, config.split_seed + 1), kind="stable")
        taken = [general[i] for i in order[:wanted]]
        root = write_store(itertools.chain(texts, taken), Path(config.cache_dir)).root
    store = TextStore.open(distributed.broadcast(root))
    added = len(store) - len(texts)
    logger.info("mix: %d texts of %s, %.0f%% of the %d texts with the corpus's%s", added, config.mix,
                100 * added / len(store), len(store), "" if added >= wanted else f" (asked for {wanted})")  # fmt: skip
    return store


def with_passages(texts: TextStore, config: RunConfig, teacher: Teacher) -> TextStore:
    """The corpus with every text longer than the teacher's max length cut at sentence ends (`passages = "cut"`)."""
    if config.passages == "whole":
        return texts
    root = None
    if distributed.group().is_main:

        def count(text: str) -> int:  # NOTE: verbose=False: a long document is why it is counted, no warning needed
            return len(teacher.tokenizer(teacher.prompt + text, verbose=False)["input_ids"])

        pieces = (piece for text in texts for piece in cut_at_sentences(text, count, teacher.max_length))
        root = write_store(pieces, Path(config.cache_dir)).root
    store = TextStore.open(distributed.broadcast(root))
    logger.info("passages: %d corpus texts cut at sentence ends into %d that fit %d tokens", len(texts), len(store),
                teacher.max_length)  # fmt: skip
    return store


def with_augmented(
    texts: TextStore, split: np.ndarray, config: RunConfig, teacher: Teacher
) -> tuple[TextStore, np.ndarray]:
    """The corpus with `config.augment`'s new texts after it, all in the training split (rank 0 writes them)."""
    kinds = parse_augment(config.augment)
    if not kinds:
        return texts, split
    root = None
    if distributed.group().is_main:
        train = _Rows(texts, np.flatnonzero(split == Split.TRAIN))
        words = (
            vocabulary_words(Speller(teacher.tokenizer.backend_tokenizer).spellings()) if Augment.BAGS in kinds else []
        )
        new = augmented(train, kinds, config.split_seed, words)
        root = write_store(itertools.chain(texts, new), Path(config.cache_dir)).root
    store = TextStore.open(distributed.broadcast(root))
    added = len(store) - len(texts)
    logger.info("augment: %d new training texts (%s)", added, ", ".join(k.value for k in kinds))
    return store, np.concatenate([split, np.full(added, Split.TRAIN, dtype=np.uint8)])


class _Rows(Sequence[str]):
    """The texts of a store at `index`, read one at a time."""

    def __init__(self, texts: TextStore, index: np.ndarray) -> None:
        self.texts, self.index = texts, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        return self.texts[int(self.index[i])]


def cached_targets(teacher: Teacher, config: RunConfig) -> Targets:
    """Targets that an earlier `distill targets` built with these settings (with token vectors, if both exist)."""
    texts = with_passages(load_store(config), config, teacher)
    collection = len(texts)
    texts = with_mix(texts, config)
    split = assign_splits(texts, config.valid_fraction, config.test_fraction, config.split_seed)
    texts, split = with_augmented(texts, split, config, teacher)
    requested = TokenTargets(config.token_targets)
    kept = {TokenTargets.STORE: [True], TokenTargets.AUTO: [True, False]}.get(requested, [False])
    for token_vectors in kept:
        root = targets_root(Path(config.cache_dir), teacher, texts, split, token_vectors)
        if (root / "meta.json").is_file():
            targets = Targets.open(root)
            if requested is TokenTargets.ONLINE:
                targets.token_mode = TokenTargets.ONLINE
            targets.collection_texts = collection
            return targets
    raise DistillError("no cached targets for these settings; run `distill targets` with them first")


def run(config: RunConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = False) -> RunSummary:
    """Targets, then every student in `config.students`; returns what was made and how long it took.

    Into a folder that holds a run, the students are added to it; one it already holds is trained again only with
    `overwrite` (or goes on with `resume`), which `rerun.check_output` says before any work.
    """
    watch = Stopwatch()
    check_output(config, resume=resume, overwrite=overwrite)
    distributed.init(config.placement().device.type)
    teacher, texts = load_inputs(config, watch, progress)
    return run_from_model(teacher, texts, config, resume=resume, overwrite=overwrite, progress=progress, watch=watch)


def run_from_model(
    teacher: Teacher,
    texts: Sequence[str] | TextStore,
    config: RunConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    watch: Stopwatch | None = None,
) -> RunSummary:
    """The core of `run`, on a teacher and texts already in memory (or in a text store)."""
    watch = watch or Stopwatch()
    check_output(config, resume=resume, overwrite=overwrite)
    teacher.place(config.placement())
    check_students(teacher, config)
    targets = targets_from_model(teacher, texts, config, watch, progress)
    return train_students(teacher, targets, config, watch, resume=resume, overwrite=overwrite, progress=progress)


def train_students(
    teacher: Teacher,
    targets: Targets,
    config: RunConfig,
    watch: Stopwatch,
    *,
    resume: bool,
    progress: bool,
    overwrite: bool = False,
) -> RunSummary:
    """Build and train every student; rank 0 alone tests and saves them and writes the summary (with the run's
    earlier students that share these targets, `rerun.kept_students`)."""
    here = distributed.group()
    run_dir = config.run_dir
    key = cache_key(teacher, targets.texts.fingerprint, targets.split, token_vectors=False)
    existing = read_summary(run_dir) if is_run(run_dir) else None  # the run this one adds to, if any
    check_targets(run_dir, existing, key, overwrite=overwrite)
    counts = {s.name.lower(): len(targets.indices(s)) for s in Split}
    placement = teacher.placement  # NOTE: placed by load_teacher or run_from_model, from the same settings
    summary = RunSummary(str(run_dir), counts, teacher.name, teacher.max_length, str(targets.root), teacher.prompt,
                         teacher.trust_remote_code, str(placement.device), placement.precision.value,
                         watch.seconds, targets.token_mode.value, here.world, config.corpus,
                         targets.collection_texts, config.index, target_settings(config), key)  # fmt: skip
    logger.info("training on %s%s", placement, f", {here.world} processes" if here.active else "")
    # NOTE: a student resumed from a finished checkpoint keeps the training time its run recorded
    earlier = {s["name"]: s["train_seconds"] for s in (existing or {}).get("students", [])}
    if here.is_main:
        test_texts, test_vectors = targets.texts_and_vectors(Split.TEST, TEST_TEXTS)
        others = {name: (texts, teacher.sentence_vectors(texts, batch_size=config.teacher_batch_size))
                  for name, texts in other_domain_texts().items()}  # fmt: skip
    for name in config.students:
        cls = student_class(config.kind_of(name))
        train_config = config.train_config_for(name, cls.default_training)
        warnings = []
        if train_config.token_loss_weight > 0 and targets.token_mode is TokenTargets.NONE:
            warnings.append(f"{name}: trained without its token loss, as --token-targets none keeps no token "
                            "vectors; use store or online for the full recipe")  # fmt: skip
            train_config.token_loss_weight = 0.0
        with watch.stage(f"train {name}"):
            torch.manual_seed(train_config.seed)  # NOTE: students built with random weights are built alike each run
            student = cls.from_teacher(teacher, targets, **config.student_options(name))
            trainer = Trainer(student, targets, train_config, run_dir / "train" / name, placement,
                              token_targets=targets.token_mode, teacher=teacher)  # fmt: skip
            result = trainer.train(resume=resume, progress=progress)
            student.to("cpu").finalize()  # NOTE: saved and tested on the CPU, as it is exported and served
        if not here.is_main:
            continue
        path = student.save(run_dir / "students" / name)
        test = fidelity(student, student.token_ids(test_texts), test_vectors) if test_texts else float("nan")
        on_others = {name: fidelity(student, student.token_ids(texts), vectors)
                     for name, (texts, vectors) in others.items()}  # fmt: skip
        gives_tokens = hasattr(student, "forward_tokens")
        tokens = token_fidelity(student, targets, targets.indices(Split.TEST)[:TEST_TEXTS]) if gives_tokens else None
        summary.students.append(StudentSummary(
            name=name, path=str(path), params=student.num_parameters(), bytes=folder_bytes(path),
            test_fidelity=test, reviews_fidelity=on_others.get("reviews", float("nan")),
            valid_fidelity=result.best_fidelity, other_domain=on_others,
            other_domain_fidelity=float(np.mean(list(on_others.values()))) if on_others else float("nan"),
            train_seconds=earlier.get(name, watch.seconds[f"train {name}"]) if result.finished_before
            else watch.seconds[f"train {name}"], epochs=result.epochs_run, test_token_fidelity=tokens,
            metrics=dict(getattr(student, "metrics", {})), start_fidelity=result.start_fidelity,
            warnings=warnings + student_warnings(name, result), matryoshka=train_config.matryoshka,
        ))  # fmt: skip
        logger.info("%s: test fidelity %.4f, saved to %s", name, test, path)
    if here.is_main:
        known = {f.name for f in fields(StudentSummary)}
        kept = [StudentSummary(**{k: v for k, v in entry.items() if k in known})
                for entry in kept_students(run_dir, existing, list(config.students), key)]  # fmt: skip
        summary.students = kept + summary.students
        write_summary(run_dir, asdict(summary))
        write_run_cards(run_dir)  # a README.md with the Hub's metadata and these figures in each student's folder
    distributed.barrier()
    return summary


def student_warnings(name: str, result: TrainResult) -> list[str]:
    """One line per thing the user must know: training that did not help, a student below the floor."""
    out = []
    if result.best_epoch == 0 and result.epochs_run > 0:
        out.append(f"{name}: no epoch beat its starting point (validation {result.start_fidelity:.4f}), so it was "
                   "kept as built; try a lower --lr or more text")  # fmt: skip
    if result.best_fidelity < FIDELITY_FLOOR:
        out.append(f"{name}: validation fidelity {result.best_fidelity:.4f} is below {FIDELITY_FLOOR}; try more "
                   "text (a few thousand sentences at least), more --epochs, or another student kind")  # fmt: skip
    for line in out:
        logger.warning(line)
    return out


def folder_bytes(path: Path) -> int:
    """The bytes of a saved model's folder. NOTE: a transformer student's `onnx/` subfolder (sentence-transformers'
    ONNX backend, written by `distill export`) is an export, not the saved student: counted, a student's size
    changed with whether it had been exported (60 MB or 134 MB)."""
    root = Path(path)
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and f.relative_to(root).parts[0] != "onnx")
