"""Exact nearest-document search and the ranking metrics of retrieval, as trec_eval (pytrec_eval) and MTEB define them.

    ranked = search(query_vectors, document_vectors, document_ids, k=100)  # each query's top 100 ids, best first
    scores = ranking_metrics(ranked, qrels)  # {"ndcg_at_10", "recall_at_100", "mrr_at_10"}, x 100

Definitions (those of trec_eval 9, which pytrec_eval wraps, and of BEIR and MTEB, which call it):
- documents are ranked by score, a tie going to the larger document id (trec_eval sorts on score,
  then on the document id in reverse);
- nDCG@10: the gain of a document is its graded relevance in the qrels (0 when not judged or not
  positive), discounted by log2(rank + 1); divided by the same sum over the qrels' own best order,
  cut at 10 too (0 when no document is relevant);
- recall@100: the relevant documents (relevance >= 1) in the top 100, over all relevant ones (0 when none);
- MRR@10: 1 / the rank of the first relevant document in the top 10 (0 when none is there);
- each is averaged over the queries that have qrels and were searched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Qrels = Mapping[str, Mapping[str, int]]  # query id -> document id -> graded relevance
Ranked = Mapping[str, Sequence[str]]  # query id -> document ids, best first

BLOCK_SCORES = 2**25  # scores held at once: queries are scored in blocks of (queries, documents), 128 MB of float32


def search(
    queries: np.ndarray, documents: np.ndarray, document_ids: Sequence[str], k: int, query_ids: Sequence[str]
) -> dict[str, list[str]]:
    """Each query's `k` best documents by dot product (cosine for unit vectors), best first, ties to the larger id.

    `queries` (q, dim) and `documents` (d, dim); the result maps `query_ids[i]` to document ids.
    """
    k = min(k, len(document_ids))
    # NOTE: every document tied with the k-th best is kept before the order is settled, so a tie at the cut
    # is broken by id as trec_eval breaks it, not by argpartition's arbitrary order.
    id_order = np.argsort(np.argsort(np.asarray(document_ids, dtype=object), kind="stable"), kind="stable")
    out: dict[str, list[str]] = {}
    chunk = max(1, min(256, BLOCK_SCORES // max(1, len(document_ids))))
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ documents.T  # (chunk, documents)
        kth = np.partition(scores, -k, axis=1)[:, -k]  # (chunk,) the k-th best score of each query
        for row, (line, cut) in enumerate(zip(scores, kth, strict=True)):
            candidates = np.flatnonzero(line >= cut)
            order = candidates[np.lexsort((-id_order[candidates], -line[candidates]))][:k]
            out[query_ids[start + row]] = [document_ids[i] for i in order]
    return out


def ndcg(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """nDCG@k of one query's ranking: gains are the graded relevances, the ideal is the qrels' own best order."""
    gains = [max(relevance.get(doc, 0), 0) for doc in ranked[:k]]
    ideal = sorted((max(r, 0) for r in relevance.values()), reverse=True)[:k]
    best = _dcg(ideal)
    return _dcg(gains) / best if best > 0 else 0.0


def _dcg(gains: Sequence[float]) -> float:
    return float(sum(gain / np.log2(rank + 2) for rank, gain in enumerate(gains) if gain))


def recall(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """The share of the relevant documents (relevance >= 1) that are in the top k."""
    relevant = {doc for doc, r in relevance.items() if r >= 1}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def reciprocal_rank(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """1 / the rank of the first relevant document in the top k, else 0."""
    return next((1.0 / rank for rank, doc in enumerate(ranked[:k], 1) if relevance.get(doc, 0) > 0), 0.0)


def ranking_metrics(ranked: Ranked, qrels: Qrels) -> dict[str, float]:
    """nDCG@10, recall@100 and MRR@10 (x 100), averaged over the queries with qrels that were searched."""
    judged = [q for q in ranked if q in qrels]
    if not judged:
        return {"ndcg_at_10": 0.0, "recall_at_100": 0.0, "mrr_at_10": 0.0}
    per_query = {
        "ndcg_at_10": [ndcg(ranked[q], qrels[q], 10) for q in judged],
        "recall_at_100": [recall(ranked[q], qrels[q], 100) for q in judged],
        "mrr_at_10": [reciprocal_rank(ranked[q], qrels[q], 10) for q in judged],
    }
    return {name: float(100 * np.mean(values)) for name, values in per_query.items()}
