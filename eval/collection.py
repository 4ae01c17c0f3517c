"""Retrieval on the user's own collection, with no labels needed (`--tasks collection`): the share a student keeps
of the teacher's retrieval on the text it will serve, before it ships.

A run records how many of its texts are the corpus's own passages (`collection_texts` in summary.json: the
corpus cut into passages, before any general text or augmentation). Up to `QUERIES` of those in the test split,
which no student trained on, each lose one sentence, which must find its passage among `DOCUMENTS` of the
collection's passages (the inverse cloze task of `eval.cloze`). Where the corpus is a BEIR folder with queries and
judgements, its own retrieval task is scored too.

The run is read when the task is first scored, so `distill run --tasks collection` names it before the run exists.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from distill.data.corpus import Split
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.runfolder import is_run, read_summary
from eval.cloze import QUERIES, cloze_from_passages
from eval.encoders import TaskEncoder, VectorCache
from eval.retrieval import QRELS_SPLITS, RetrievalData, RetrievalEvaluator

logger = logging.getLogger(__name__)

COLLECTION = "collection"  # the task spec
DOCUMENTS = 5000  # passages searched: the test split's asked passages and the collection's first others


def own_cloze(run_dir: str | Path, documents: int = DOCUMENTS, queries: int = QUERIES) -> RetrievalData:
    """The inverse cloze task on the collection of the finished run in `run_dir` (see the module docstring)."""
    summary = read_summary(run_dir) if is_run(run_dir) else {}
    count = summary.get("collection_texts")
    if not count or not summary.get("targets"):
        raise DistillError(f"{str(run_dir)!r} records no collection of its own (a run of this version, trained on "
                           "a corpus, does); score a task of yours with --tasks KIND:PATH instead")  # fmt: skip
    targets = Targets.open(Path(summary["targets"]))
    tested = [int(i) for i in targets.indices(Split.TEST) if i < count][: 2 * queries]
    others = [i for i in range(count) if targets.split[i] != Split.TEST][: max(0, documents - len(tested))]
    chosen = sorted(tested + others)
    texts = targets.texts.take(chosen)
    where = {index: position for position, index in enumerate(chosen)}
    try:
        return cloze_from_passages(texts, askable=[where[i] for i in tested], queries=queries)
    except DistillError as e:
        raise DistillError(f"the held-out passages of {str(run_dir)!r}: {e}") from e


class RunCloze:
    """`RetrievalEvaluator` of `own_cloze`, built when it is first called: the run is trained by then.

    A collection whose held-out passages have too few sentences to take one out scores nothing, with a warning:
    the run's students are trained and saved by then, and the other tasks still count.
    """

    deferred = True  # its size is known once the run is trained: `Task` reads it when it reports, not when made

    def __init__(self, run_dir: str | Path, cache: VectorCache | None = None) -> None:
        self.run_dir, self.cache = Path(run_dir), cache
        self._evaluator: RetrievalEvaluator | None = None
        self._failed = False

    @property
    def evaluator(self) -> RetrievalEvaluator | None:
        if self._evaluator is None and not self._failed:
            try:
                self._evaluator = RetrievalEvaluator(own_cloze(self.run_dir), self.cache)
            except DistillError as e:
                logger.warning("collection task: %s; it is left out", e)
                self._failed = True
        return self._evaluator

    @property
    def size(self) -> dict[str, int]:
        return self.evaluator.data.size if self.evaluator is not None else {}

    def __call__(self, model: TaskEncoder, index: TaskEncoder | None = None) -> dict[str, Any]:
        return self.evaluator(model, index=index) if self.evaluator is not None else {}


def corpus_queries(corpus: str) -> Path | None:
    """The BEIR folder `corpus` names, if it holds queries and judgements to score its own retrieval with."""
    folder = Path(corpus).expanduser()
    if folder.is_file() and folder.name == "corpus.jsonl":
        folder = folder.parent
    has_qrels = any((folder / "qrels" / f"{split}.tsv").is_file() for split in QRELS_SPLITS)
    return (
        folder if (folder / "corpus.jsonl").is_file() and (folder / "queries.jsonl").is_file() and has_qrels else None
    )
