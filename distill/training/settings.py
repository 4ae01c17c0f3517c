"""`TrainConfig`: the settings of one student's training, each a `distill run` flag and a TOML key of the same name
(`distill.training.config` fills it from both), validated once when made."""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.errors import DistillError
from distill.training.losses import LossKind


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: float = 0.05  # fraction of all steps spent warming up (at least a few: `trainer.warmup_steps`)
    grad_clip: float = 1.0
    patience: int = 3  # epochs without a better validation fidelity before stopping
    seed: int = 0
    loss: LossKind = LossKind.COSINE
    token_loss_weight: float = 0.0  # weight of the per-token loss, for students that give token vectors
    # weight of each kept layer's output against the teacher layer it came from (the transformer student of a
    # teacher's own width); runs the teacher on every batch
    hidden_loss_weight: float = 0.0
    # in-batch terms on the sentence vectors (distill.training.losses): the cosine matrix against the teacher's,
    # the same as a query encoder for a teacher's index sees it, and each text's ranking of the others
    similarity_weight: float = 0.0
    index_weight: float = 0.0
    rank_weight: float = 0.0
    rank_temperature: float = 0.05
    # Matryoshka training: the sentence loss also on the vectors shortened to each of these first k coordinates
    # in the teacher's basis (`distill.training.losses.MatryoshkaLoss`); empty: off. "256,128,64" is read too.
    matryoshka: list[int] = field(default_factory=list)
    matryoshka_weight: float = 1.0  # weight of each shortened vector's loss, against 1 for the full vector's
    valid_texts: int = 10_000  # validation fidelity on at most this many texts of the validation split
    workers: int | None = None  # data-loading processes (default: none on the CPU, 2 on a GPU)

    def __post_init__(self) -> None:
        self.loss = LossKind(self.loss)
        if self.epochs <= 0:
            raise DistillError(f"epochs must be a positive whole number, not {self.epochs}")
        if self.batch_size <= 0:
            raise DistillError(f"batch-size must be a positive whole number, not {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise DistillError(f"workers must be 0 or more, not {self.workers}")
        if min(self.lr, self.grad_clip, self.patience, self.valid_texts) <= 0 or not 0 <= self.warmup < 1:
            raise DistillError("lr, grad-clip, patience and valid-texts must be positive and warmup in [0, 1)")
        weights = (self.token_loss_weight, self.hidden_loss_weight, self.similarity_weight, self.index_weight,
                   self.rank_weight)  # fmt: skip
        if min(weights) < 0:
            raise DistillError("loss weights (token-loss-, hidden-loss-, similarity-, index-, rank-weight) must be 0 "
                               "or more")  # fmt: skip
        if self.rank_temperature <= 0:
            raise DistillError(f"rank-temperature must be positive, not {self.rank_temperature}")
        self.matryoshka = _dims(self.matryoshka)
        if self.matryoshka_weight < 0:
            raise DistillError(f"matryoshka-weight must be 0 or more, not {self.matryoshka_weight}")


def _dims(value: list[int] | str | int | None) -> list[int]:
    """Matryoshka dims from a flag ("256,128,64") or a config list, largest first, each once."""
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list | tuple) else [value]
    try:
        dims = {int(str(item).strip()) for item in items if str(item).strip()}
    except ValueError as e:
        raise DistillError(
            f"matryoshka must be whole numbers of dimensions (for example 256,128,64), not {value!r}"
        ) from e
    if any(k < 1 for k in dims):
        raise DistillError(f"matryoshka dims must be 1 or more, not {value!r}")
    return sorted(dims, reverse=True)
