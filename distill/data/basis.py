"""The teacher's `Basis` (`distill.runtime.vectors`) from a run's targets: the principal directions of its sentence
vectors of the training texts, which shorter vectors keep the first of (`dimensions`)."""

from __future__ import annotations

import numpy as np

from distill.data.corpus import Split
from distill.data.targets import Targets
from distill.runtime.vectors import Basis

BASIS_TEXTS = 200_000  # training texts read at most (evenly spread): plenty for a dim x dim covariance


def teacher_basis(targets: Targets, limit: int = BASIS_TEXTS) -> Basis:
    """The basis of the teacher's sentence vectors of the run's training texts (at most `limit`, evenly spread)."""
    index = targets.indices(Split.TRAIN)
    if len(index) > limit:
        index = index[np.linspace(0, len(index) - 1, limit).astype(np.int64)]
    return Basis.fit(np.asarray(targets.sentence_vectors[np.sort(index)], dtype=np.float32))
