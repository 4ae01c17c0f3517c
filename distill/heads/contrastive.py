"""The contrastive start of a tuned head (`distill head train --tune ... --contrastive-epochs N`), as SetFit's.

Before any head, pairs of labelled texts teach the model the task's notion of "alike": two texts
of the same label should have sentence vectors of cosine 1, two of different labels cosine 0
(sentence-transformers' CosineSimilarityLoss, which SetFit trains its body with). With a few
labels a class this reshapes the vector space more than a head's cross-entropy can, since every
text takes part in many pairs:

    a, b, target = label_pairs(label_ids, pairs_per_text=4, rng)  # (pairs,) each
    loss = mean((cos(model(a), model(b)) - target) ** 2)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from students.base import Student, pad

if TYPE_CHECKING:
    from distill.heads.tune_config import TuneConfig

logger = logging.getLogger(__name__)


def label_pairs(label_ids: np.ndarray, pairs_per_text: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Row pairs (a, b) and their targets: for each row, `pairs_per_text` partners of its label (target 1) and
    as many of another label (target 0), drawn at random; shuffled. A row alone in its class is its own partner."""
    by_class = {c: np.flatnonzero(label_ids == c) for c in np.unique(label_ids)}
    a, b, target = [], [], []
    for row, c in enumerate(label_ids):
        same = by_class[c][by_class[c] != row]
        same = same if len(same) else np.array([row])
        other = np.flatnonzero(label_ids != c)
        a += [row] * (2 * pairs_per_text)
        b += [*rng.choice(same, pairs_per_text), *rng.choice(other, pairs_per_text)]
        target += [1.0] * pairs_per_text + [0.0] * pairs_per_text
    order = rng.permutation(len(a))
    return np.asarray(a)[order], np.asarray(b)[order], np.asarray(target, dtype=np.float32)[order]


def contrastive_start(student: Student, ids: Sequence[Sequence[int]], label_ids: np.ndarray,
                      optimizers: list[torch.optim.Optimizer], config: TuneConfig) -> list[float]:  # fmt: skip
    """Train the student with `optimizers` (over the parameters the tune setting names) on label pairs of the
    texts `ids`, for `config.contrastive_epochs` epochs of new pairs; each epoch's mean loss."""
    rng = np.random.default_rng(config.seed)
    losses = []
    pairs = 2 * config.pairs_per_text * len(ids)
    steps = -(-pairs // config.batch_size)
    with tqdm(total=config.contrastive_epochs * steps, desc="contrastive start", unit="batch") as bar:
        for _ in range(config.contrastive_epochs):
            student.train()
            a, b, target = label_pairs(label_ids, config.pairs_per_text, rng)
            total = 0.0
            for start in range(0, len(a), config.batch_size):
                rows = slice(start, start + config.batch_size)
                loss = _pair_loss(student, [ids[i] for i in a[rows]], [ids[i] for i in b[rows]],
                                  torch.from_numpy(target[rows]))  # fmt: skip
                for optimizer in optimizers:
                    optimizer.zero_grad()
                loss.backward()
                for optimizer in optimizers:
                    optimizer.step()
                total += float(loss) * len(target[rows])
                bar.update(1)
            losses.append(total / len(a))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    student.eval()
    logger.info("contrastive start: %d epochs of %d pairs, loss %s", config.contrastive_epochs, pairs,
                " -> ".join(f"{x:.4f}" for x in losses))  # fmt: skip
    return losses


def _pair_loss(student: Student, a: list[Sequence[int]], b: list[Sequence[int]], target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of each pair's cosine to its target (1 alike, 0 not); (pairs,) -> scalar."""
    batch = pad([*a, *b])  # NOTE: one forward pass for both sides
    vectors = student(batch["input_ids"].to(student.device), batch["attention_mask"].to(student.device))
    left, right = vectors[: len(a)], vectors[len(a) :]  # (pairs, dim) each, unit length
    cosine = (left * right).sum(dim=-1)  # (pairs,)
    return torch.nn.functional.mse_loss(cosine, target.to(cosine.device))
