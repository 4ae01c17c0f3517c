"""Clustering: k-means over a model's vectors, scored by V-measure against the gold labels, over several seeds.

    evaluator = ClusteringEvaluator(*read_labelled("topics.csv"))
    evaluator(encode)  # {"v_measure": mean over the seeds x 100}

k is the number of gold labels, as MTEB's clustering tasks set it; vectors are unit length (the
geometry every model here is compared in), and each seed runs k-means once from its own start.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import v_measure_score

from distill.errors import DistillError
from eval.encoders import Encode, TaskEncoder, as_encoder
from eval.fidelity import unit

SEEDS = 10


class ClusteringEvaluator:
    """`__call__(encoder) -> {v_measure}` x 100: the mean over `seeds` k-means runs."""

    def __init__(self, texts: Sequence[str], labels: Sequence[str], seeds: int = SEEDS) -> None:
        if len(texts) != len(labels) or len(set(labels)) < 2 or seeds < 1:
            raise DistillError("a clustering task needs as many labels as texts, at least 2 labels and 1 seed")
        self.texts, self.labels, self.seeds = list(texts), [str(x) for x in labels], seeds
        self.k = len(set(self.labels))

    @property
    def size(self) -> dict[str, int]:
        return {"texts": len(self.texts), "clusters": self.k}

    def __call__(self, model: TaskEncoder | Encode) -> dict[str, float]:
        vectors = unit(as_encoder(model).encode(self.texts)).astype(np.float64)
        scores = [v_measure_score(self.labels, KMeans(self.k, n_init=1, random_state=seed).fit_predict(vectors))
                  for seed in range(self.seeds)]  # fmt: skip
        return {"v_measure": float(100 * np.mean(scores))}
