"""`TuneConfig`: how `distill head train --tune` trains a model with its head (`distill.heads.tuning`).

Torch-free, so the CLI builds its options from these defaults without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distill.errors import DistillError

TUNES = ("none", "last", "query", "all")  # what of the model trains with the head
TABLE_LRS = (1e-3, 3e-3, 1e-2)  # a static student's table learning rates tried when none is given


@dataclass
class TuneConfig:
    """How a model is trained with its head (the defaults: a small student on a few thousand texts)."""

    tune: str = "all"  # one of TUNES: "none" trains the head alone (a frozen head; `train_classifier`)
    lr: float = 1e-4  # the model's layers
    head_lr: float = 1e-3
    # a static student's table rows; None: each of TABLE_LRS is tried and the one of best validation macro-F1 kept.
    # NOTE: on SUBJ, MR and TREC-6 the best one differed (1e-3, 3e-3, 3e-3 by validation); 3e-2, the first default,
    # was too high everywhere (SUBJ test accuracy 89.89 against 91.85 at 1e-3)
    table_lr: float | None = None
    epochs: int = 4
    patience: int = 2  # epochs without a better validation macro-F1 (or, at an equal one, 0.1% lower loss)
    batch_size: int = 32
    # NOTE: 0 by default: with decay AdamW moves every row of a table, also those of tokens no text has
    weight_decay: float = 0.0
    contrastive_epochs: int = 0  # epochs of the contrastive start (pairs from the labels) before the head
    pairs_per_text: int = 4  # positive and as many negative pairs a text, per contrastive epoch
    seed: int = 0
    # torch's threads while tuning; 0: torch's default (one per core). NOTE: on 2 cores shared with other jobs,
    # a training step of the default transformer student took 3x longer on 2 threads than on 1
    threads: int = 0
    # the starting head and the validation split, a distill.heads.head.HeadTrainConfig (None: its defaults)
    # NOTE: typed Any, not imported even for type checking: heads.head imports this module (no import circle)
    head: Any = None

    def __post_init__(self) -> None:
        if self.tune not in TUNES:
            raise DistillError(f"unknown --tune {self.tune!r}; choose from: {', '.join(TUNES)}")
        if min(self.lr, self.head_lr, self.table_lr or 1.0) <= 0 or self.weight_decay < 0:
            raise DistillError("tuning learning rates must be positive and weight decay not negative")
        if min(self.epochs, self.patience, self.batch_size, self.pairs_per_text) < 1 or self.contrastive_epochs < 0:
            raise DistillError("tuning epochs, patience, batch size and pairs a text must be positive")
        if self.threads < 0:
            raise DistillError(f"threads must be 0 (torch's default) or more, not {self.threads}")
        if self.contrastive_epochs and self.tune == "none":
            raise DistillError("--contrastive-epochs trains the model: give it --tune last, query or all")
