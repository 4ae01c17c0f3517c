"""How faithfully a model reproduces the teacher's sentence vectors on one set of texts.

Every metric compares two (n, dim) matrices of unit vectors for the same texts: the teacher's,
embedded once, and the model's. Two need the model in the teacher's space: cosine and
cross-encoding retrieval. Two only compare the geometry of each space with itself, so they also
apply to a model with a space of its own (model2vec after its PCA): neighbour agreement and the
Spearman correlation of pairwise similarities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from distill.errors import DistillError

Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, dim) unit vectors

MAX_PAIRWISE_TEXTS = 1000  # 1000 texts -> 499,500 pairs for the Spearman correlation
MAX_NEIGHBOUR_TEXTS = 5000  # the similarity matrices stay under 100 MB each


class FidelityEvaluator:
    """`__call__(encode) -> dict`: the fidelity metrics of a model against the teacher, on `texts`."""

    def __init__(self, texts: Sequence[str], teacher_vectors: np.ndarray, k: int = 10) -> None:
        if len(texts) < k + 2:  # NOTE: k neighbours besides itself, and k documents after the queries
            raise DistillError(f"fidelity needs at least {k + 2} texts, got {len(texts)}")
        self.texts = list(texts)
        self.teacher_vectors = unit(teacher_vectors)
        self.k = k

    def __call__(self, encode: Encode, same_space: bool = True) -> dict[str, float | None]:
        return fidelity_metrics(self.teacher_vectors, encode(self.texts), self.k, same_space)


class DomainFidelityEvaluator:
    """`__call__(encode) -> dict`: mean cosine to the teacher on each named set of texts, and their mean.

    The sets are text of other forms than the training corpus (`distill.data.domains`): how well a
    model holds up on text it was never trained on. Each set counts once in the mean, whatever
    its size, as in the run's summary.json.
    """

    def __init__(self, sets: dict[str, Sequence[str]], teacher_vectors: dict[str, np.ndarray]) -> None:
        self.sets = {name: list(texts) for name, texts in sets.items() if len(texts)}
        self.teacher_vectors = {name: unit(teacher_vectors[name]) for name in self.sets}

    def __call__(self, encode: Encode, same_space: bool = True) -> dict[str, Any]:
        cosines = {name: cosine_mean(self.teacher_vectors[name], encode(texts)) if same_space else None
                   for name, texts in self.sets.items()}  # fmt: skip
        return domain_figures(cosines)

    def of_teacher(self) -> dict[str, Any]:
        """The teacher's own figures: 1 on every set by definition, as its vectors are the reference."""
        return domain_figures(dict.fromkeys(self.sets, 1.0))


def domain_figures(cosines: dict[str, float | None]) -> dict[str, Any]:
    """`other_domain` (each set's mean cosine) and `other_domain_fidelity` (their mean; None if any is None)."""
    values = list(cosines.values())
    known = values and all(v is not None for v in values)
    return {"other_domain": cosines, "other_domain_fidelity": float(np.mean(values)) if known else None}


def cosine_mean(teacher: np.ndarray, model: np.ndarray) -> float | None:
    """Mean cosine between each teacher vector and the model's for the same text; None if their dimensions differ."""
    if teacher.shape[1] != model.shape[1]:
        return None
    return float((unit(teacher) * unit(model)).sum(axis=1).mean())


def fidelity_metrics(
    teacher: np.ndarray, model: np.ndarray, k: int = 10, same_space: bool = True
) -> dict[str, float | None]:
    """All metrics for (n, dim) teacher vectors and (n, dim') model vectors of the same texts.

    `same_space`: whether the model's vectors live in the teacher's space (a student trained to
    reproduce them does); if not, cosine and cross-encoding retrieval are None.
    """
    model = unit(model)
    same_space = same_space and teacher.shape[1] == model.shape[1]
    cosines = (teacher * model).sum(axis=1) if same_space else None
    return {
        "cosine_mean": float(cosines.mean()) if same_space else None,
        "cosine_p5": float(np.percentile(cosines, 5)) if same_space else None,
        f"neighbours_top{k}": neighbour_agreement(teacher, model, k),
        "pairwise_spearman": pairwise_spearman(teacher, model),
        f"cross_recall_at{k}": cross_retrieval_recall(teacher, model, k) if same_space else None,
        "texts": len(teacher),
    }


def neighbour_agreement(teacher: np.ndarray, model: np.ndarray, k: int = 10) -> float:
    """Mean share of each text's k nearest neighbours (itself excluded) that the model and the teacher agree on."""
    teacher, model = teacher[:MAX_NEIGHBOUR_TEXTS], model[:MAX_NEIGHBOUR_TEXTS]
    return _overlap(top_k(teacher @ teacher.T, k, exclude_self=True), top_k(model @ model.T, k, exclude_self=True))


def pairwise_spearman(teacher: np.ndarray, model: np.ndarray) -> float:
    """Spearman correlation between the teacher's and the model's cosine similarity over all pairs of texts."""
    teacher, model = teacher[:MAX_PAIRWISE_TEXTS], model[:MAX_PAIRWISE_TEXTS]
    upper = np.triu_indices(len(teacher), k=1)
    return float(spearmanr((teacher @ teacher.T)[upper], (model @ model.T)[upper]).statistic)


def cross_retrieval_recall(teacher: np.ndarray, model: np.ndarray, k: int = 10, query_share: float = 0.2) -> float:
    """Recall@k of queries embedded by the model against documents embedded by the teacher.

    The first `query_share` of the texts are queries, the rest documents. The teacher's own
    ranking (teacher queries against teacher documents) is the truth: this is what happens when
    a student encodes queries against an index the teacher built, with no re-indexing.
    """
    split = max(1, int(len(teacher) * query_share))
    documents = teacher[split:]
    truth = top_k(teacher[:split] @ documents.T, k)
    found = top_k(model[:split] @ documents.T, k)
    return _overlap(truth, found)


def top_k(similarity: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    """(rows, k) column indices of the k largest entries of each row (in no particular order)."""
    if exclude_self:
        similarity = similarity.copy()
        np.fill_diagonal(similarity, -np.inf)
    return np.argpartition(-similarity, k - 1, axis=1)[:, :k]


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each row's indices in `a` that also appear in the same row of `b`."""
    return float(np.mean([len(np.intersect1d(x, y)) / a.shape[1] for x, y in zip(a, b, strict=True)]))


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
