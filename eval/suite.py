"""The user's tasks: what `--tasks SPEC` names, read into `Task`s (an evaluator, its kind, where its data came from).

A SPEC is a comma-separated list (the flag may also repeat) of:

    default                    the small suite that ships (`eval.small_suite`): offline, indicative only
    KIND:PATH                  a task of that kind: retrieval, classification, clustering or sts
    passages:PATH              retrieval over a .txt file of passages (one a line), with no judgements needed:
                               a sentence taken out of a passage finds it among the others (`eval.cloze`)
    collection                 the same over the run's own corpus, asked from its held-out passages, and the
                               corpus's own queries when it is a BEIR folder with them (`eval.collection`)
    PATH                       a task whose kind its layout says, or a folder holding several of them

and the layouts are:

    retrieval       a BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv
    classification  a folder with train and test files (.csv, .jsonl or .parquet) with text and label columns
    clustering      a .csv, .jsonl or .parquet file with text and label columns
    sts             a .tsv file (sentence, sentence, score a line) or a table with sentence1, sentence2, score
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.heads.data import read_labelled, read_table
from eval.classification import TABLE_SUFFIXES, ClassificationEvaluator, read_split_folder, split_file
from eval.cloze import cloze_retrieval
from eval.clustering import ClusteringEvaluator
from eval.collection import COLLECTION, RunCloze, corpus_queries
from eval.encoders import VectorCache
from eval.retrieval import RetrievalEvaluator, read_beir
from eval.small_suite import chat_qa, chat_topics, polarity
from eval.sts import COLUMNS as STS_COLUMNS
from eval.sts import read_pairs

logger = logging.getLogger(__name__)

MAIN_METRIC = {"retrieval": "ndcg_at_10", "classification": "accuracy", "clustering": "v_measure", "sts": "spearman"}
KINDS = tuple(MAIN_METRIC)
BUILT = ("passages",)  # task makers named like a kind (KIND:PATH), whose task is of one of KINDS


@dataclass
class Task:
    """One task: `evaluator(encoder) -> {metric: score}` (scores x 100), and what the report says about it."""

    name: str
    kind: str  # one of KINDS, or "mteb"
    evaluator: Callable[..., dict[str, float]]
    source: str  # where its data came from
    small: bool = False  # a small built-in set: its figures are indicative only
    main: str = ""  # the metric a model's mean share counts: MAIN_METRIC of its kind unless given
    size: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.main = self.main or MAIN_METRIC[self.kind]
        if not self.size and not getattr(self.evaluator, "deferred", False):
            self.size = dict(getattr(self.evaluator, "size", {}))

    def describe(self) -> dict[str, Any]:
        """What report.json keeps of the task (its size read from its evaluator now: a task on a run's own corpus
        knows it once the run is trained)."""
        size = self.size or dict(getattr(self.evaluator, "size", {}))
        return {"name": self.name, "kind": self.kind, "source": self.source, "small": self.small, "main": self.main,
                "size": size}  # fmt: skip


def parse_tasks(specs: Sequence[str], cache: VectorCache | None = None, run: RunCorpus | None = None) -> list[Task]:
    """The tasks a SPEC names (see the module docstring), each read now: a bad file fails before any model loads.

    `run` is the run a `collection` task reads its corpus from (when it is first scored).
    """
    tasks: list[Task] = []
    for item in (part.strip() for spec in specs for part in spec.split(",")):
        if not item or item == "none":
            continue
        if item == "default":
            tasks += default_tasks(cache)
            continue
        if item == COLLECTION:
            tasks += collection_tasks(run, cache)
            continue
        kind, _, path = item.partition(":") if item.partition(":")[0] in KINDS + BUILT else ("", "", item)
        tasks += tasks_at(Path(path).expanduser(), kind or None, cache)
    return _unique_names(tasks)


def tasks_at(path: Path, kind: str | None = None, cache: VectorCache | None = None) -> list[Task]:
    """The task at `path` (of `kind`, or of the kind its layout says), or every task in a folder holding several."""
    if not path.exists():
        raise DistillError(f"task data {str(path)!r} does not exist")
    kind = kind or detect_kind(path)
    if kind:
        return [build_task(kind, path, cache)]
    if not path.is_dir():
        raise DistillError(f"{str(path)!r} is no task: {_layouts()}; or say its kind (KIND:PATH)")
    tasks = []
    for child in sorted(p for p in path.iterdir() if not p.name.startswith(".")):
        if child_kind := detect_kind(child):
            tasks.append(build_task(child_kind, child, cache))
        else:
            logger.info("%s: not a task (skipped)", child)
    if not tasks:
        raise DistillError(f"no task in {str(path)!r}: {_layouts()}")
    return tasks


def detect_kind(path: Path) -> str | None:
    """The kind a file's or folder's layout says, or None."""
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            return "retrieval"
        return "classification" if split_file(path, "train") and split_file(path, "test") else None
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return "sts"
    if suffix not in TABLE_SUFFIXES:
        return None
    try:
        columns = set(read_table(path).columns)
    except DistillError:
        return None
    return "sts" if set(STS_COLUMNS) <= columns else "clustering" if {"text", "label"} <= columns else None


def build_task(kind: str, path: Path, cache: VectorCache | None = None) -> Task:
    """The task of `kind` read from `path`."""
    name = path.name if path.is_dir() else path.stem
    if kind == "retrieval":
        evaluator: Any = RetrievalEvaluator(read_beir(path), cache)
        return Task(name, kind, evaluator, str(path), size=evaluator.data.size)
    if kind == "passages":
        evaluator = RetrievalEvaluator(cloze_retrieval(path), cache)
        return Task(f"{name}-cloze", "retrieval", evaluator, f"{path}: a sentence taken out of a passage finds it",
                    size=evaluator.data.size)  # fmt: skip
    if kind == "classification":
        return Task(name, kind, read_split_folder(path), str(path))
    if kind == "clustering":
        return Task(name, kind, ClusteringEvaluator(*read_labelled(path)), str(path))
    if kind == "sts":
        return Task(name, kind, read_pairs(path), str(path))
    raise DistillError(f"unknown task kind {kind!r}; choose from: {', '.join(KINDS)}")


@dataclass(frozen=True)
class RunCorpus:
    """What a `collection` task needs of a run, known before it is trained: its folder and its corpus."""

    run_dir: Path
    corpus: str


def collection_tasks(run: RunCorpus | None, cache: VectorCache | None = None) -> list[Task]:
    """Retrieval on the run's own collection (`eval.collection`): its cloze task, and its own queries if it has them."""
    if run is None:
        raise DistillError("the collection task scores a run's own corpus: give it to `distill run` or `distill eval "
                           "--run`")  # fmt: skip
    source = f"{run.corpus}: a sentence taken out of a held-out passage finds it among the collection's"
    tasks = [Task("collection-cloze", "retrieval", RunCloze(run.run_dir, cache), source)]
    folder = corpus_queries(run.corpus)
    if folder is not None:
        tasks.append(build_task("retrieval", folder, cache))
    return tasks


def default_tasks(cache: VectorCache | None = None) -> list[Task]:
    """The small suite that ships (`eval.small_suite`): retrieval, classification and clustering, offline."""
    qa = RetrievalEvaluator(chat_qa(), cache)
    return [
        Task("chat-qa", "retrieval", qa, "chatterbot-corpus: each question finds its answer among all answers",
             small=True, size=qa.data.size),
        Task("polarity", "classification", ClassificationEvaluator(*polarity()),
             "gensim's 200 movie-review sentences, half to train the head, half to test", small=True),
        Task("chat-topics", "clustering", ClusteringEvaluator(*chat_topics()),
             "chatterbot-corpus's questions by topic file (ai, food, sports...)", small=True),
    ]  # fmt: skip


def _layouts() -> str:
    return ("a task is a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv), a folder of train and test "
            "files with text and label columns, a file with text and label columns (clustering), or an STS file "
            "(.tsv, or sentence1, sentence2, score columns)")  # fmt: skip


def _unique_names(tasks: list[Task]) -> list[Task]:
    """Tasks of the same name (two folders called test) numbered, so each row of the table is one task."""
    seen: dict[str, int] = {}
    for task in tasks:
        seen[task.name] = seen.get(task.name, 0) + 1
        if seen[task.name] > 1:
            task.name = f"{task.name}-{seen[task.name]}"
    return tasks
