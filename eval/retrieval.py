"""Retrieval: queries against a corpus, scored by nDCG@10, recall@100 and MRR@10 (`eval.ranking`).

A BEIR folder holds `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl` (`_id`, `text`) and
`qrels/test.tsv` (query-id, corpus-id, score; a header line):

    data = read_beir("data/scifact")
    evaluator = RetrievalEvaluator(data, cache=VectorCache("runs/cache/task-vectors"))
    evaluator(teacher)                 # the teacher's queries against its own index
    evaluator(student, index=teacher)  # also the student's queries against the teacher's index

A document is its title and text joined by a space, as BEIR and MTEB join them; each model
truncates it at its own max length, as it truncates any text. Document vectors are cached on disk
by the model's identity and the corpus's fingerprint, so a second eval does not embed a corpus again.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distill.data.corpus import join_title
from distill.errors import DistillError
from eval.encoders import Encode, TaskEncoder, VectorCache, as_encoder, files_fingerprint, fingerprint
from eval.fidelity import unit
from eval.ranking import ranking_metrics as score_ranking
from eval.ranking import search

logger = logging.getLogger(__name__)

TOP_K = 100  # documents kept per query: enough for recall@100
QRELS_SPLITS = ("test", "dev")  # the qrels file read, the first there


@dataclass
class RetrievalData:
    """A corpus, queries and their relevance judgements; only the queries with judgements are kept."""

    documents: dict[str, str]  # id -> title and text, joined
    queries: dict[str, str]  # id -> text
    qrels: dict[str, dict[str, int]]  # query id -> document id -> graded relevance
    fingerprint: str = field(default="")  # of the documents' ids and texts: the cache key's corpus part

    def __post_init__(self) -> None:
        self.queries = {q: text for q, text in self.queries.items() if q in self.qrels}
        if not self.documents or not self.queries:
            raise DistillError("a retrieval task needs documents and at least one query with relevance judgements")
        self.fingerprint = self.fingerprint or fingerprint(part for item in self.documents.items() for part in item)

    @property
    def size(self) -> dict[str, int]:
        return {"documents": len(self.documents), "queries": len(self.queries)}


def read_beir(folder: str | Path) -> RetrievalData:
    """A BEIR-format folder (corpus.jsonl, queries.jsonl, qrels/test.tsv or qrels/dev.tsv)."""
    folder = Path(folder)
    qrels_file = next((f for s in QRELS_SPLITS if (f := folder / "qrels" / f"{s}.tsv").is_file()), None)
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl"):
        if not needed.is_file():
            raise DistillError(f"retrieval folder {str(folder)!r} has no {needed.name} (a BEIR folder holds "
                               "corpus.jsonl, queries.jsonl and qrels/test.tsv)")  # fmt: skip
    if qrels_file is None:
        raise DistillError(f"retrieval folder {str(folder)!r} has no qrels/test.tsv (nor qrels/dev.tsv)")
    corpus = {row["_id"]: document_text(row) for row in _jsonl(folder / "corpus.jsonl", ("_id", "text"))}
    queries = {row["_id"]: row["text"] for row in _jsonl(folder / "queries.jsonl", ("_id", "text"))}
    qrels = read_qrels(qrels_file)
    unknown = {d for judged in qrels.values() for d in judged} - set(corpus)
    if unknown:
        logger.warning("%s: %d judged documents are not in the corpus (e.g. %r)", qrels_file, len(unknown),
                       sorted(unknown)[0])  # fmt: skip
    missing = set(qrels) - set(queries)
    if missing:
        logger.warning("%s: %d judged queries are not in queries.jsonl; they are left out", qrels_file, len(missing))
    # NOTE: the file's bytes, not only the texts: a fingerprint of a large corpus costs a read, not a parse
    return RetrievalData(corpus, queries, qrels, fingerprint=files_fingerprint([folder / "corpus.jsonl"]))


def document_text(row: dict[str, str]) -> str:
    """Title and text joined by a space, stripped, as BEIR's and MTEB's models are given a document."""
    return join_title(row.get("title") or None, str(row["text"]))


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> document id -> relevance from a tab-separated qrels file (a header line is skipped)."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for number, row in enumerate(csv.reader(f, delimiter="\t"), 1):
            if not row or (number == 1 and not row[-1].lstrip("-").isdigit()):
                continue
            try:
                query, document, score = row[0], row[1], int(row[-1])
            except (IndexError, ValueError) as e:
                raise DistillError(f"{path} line {number}: expected 'query-id<TAB>corpus-id<TAB>score', "
                                   f"got {row!r}") from e  # fmt: skip
            qrels.setdefault(query, {})[document] = score
    return qrels


def _jsonl(path: Path, needed: tuple[str, ...]) -> list[dict[str, str]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DistillError(f"{path} line {number} is not JSON: {e.msg}") from e
            if any(key not in row for key in needed):
                raise DistillError(f"{path} line {number} needs the fields {', '.join(needed)}")
            rows.append({key: str(value) if value is not None else "" for key, value in row.items()})
    return rows


class RetrievalEvaluator:
    """`__call__(encoder, index=None) -> {ndcg_at_10, recall_at_100, mrr_at_10}` x 100.

    With `index` (the teacher), the same metrics again for the encoder's queries against the index's
    document vectors, named `..._teacher_index`: a student serving queries against an index the
    teacher built, with no re-indexing. Only for an encoder in the index's space.
    """

    def __init__(self, data: RetrievalData, cache: VectorCache | None = None) -> None:
        self.data = data
        self.cache = cache
        self.document_ids = list(data.documents)
        self.query_ids = list(data.queries)
        self._index: tuple[TaskEncoder, np.ndarray] | None = None  # the index encoder and its document vectors

    def __call__(self, model: TaskEncoder | Encode, index: TaskEncoder | None = None) -> dict[str, float]:
        encoder = as_encoder(model)
        queries = unit(encoder.queries([self.data.queries[q] for q in self.query_ids]))
        out = self.score(queries, self.document_vectors(encoder))
        if index is not None and encoder.same_space:
            documents = self.index_vectors(index)
            if documents.shape[1] == queries.shape[1]:
                out.update({f"{name}_teacher_index": v for name, v in self.score(queries, documents).items()})
        return out

    def score(self, queries: np.ndarray, documents: np.ndarray) -> dict[str, float]:
        ranked = search(queries, documents, self.document_ids, TOP_K, self.query_ids)
        return score_ranking(ranked, self.data.qrels)

    def document_vectors(self, encoder: TaskEncoder) -> np.ndarray:
        """(documents, dim) unit vectors, from the cache where the encoder has an identity."""
        texts = [self.data.documents[d] for d in self.document_ids]
        if self.cache is None:
            return unit(encoder.documents(texts))
        return unit(self.cache.vectors(encoder, texts, self.data.fingerprint))

    def index_vectors(self, index: TaskEncoder) -> np.ndarray:
        """The index's document vectors, kept in memory while the same index is asked for."""
        if self._index is None or self._index[0] is not index:
            self._index = (index, self.document_vectors(index))
        return self._index[1]
