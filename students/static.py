"""The static student: one vector per vocabulary token, mean-pooled and normalised.

The fastest student: encoding a text is a table lookup and an average. The table starts from
the teacher (each token's average vector in context over the training texts, shrunk towards
its vector alone for rare tokens) and is then trained by regression on the teacher's sentence
vectors. Its vectors live in the teacher's own space and dimension: where the teacher maps its
pooled vectors through Dense layers, the token vectors in context are mapped through them too.
It reads token ids only, so it works alike for every kind of tokenizer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import nn

from distill.data.corpus import Split
from distill.data.targets import TokenTargets
from distill.errors import DistillError
from distill.teacher.tokens import check_fits
from students.base import WEIGHTS_FILE, Student, StudentConfig
from students.static_layout import STUDENT_TOKENIZER, student_rows, student_tokenizer_file, write_layout

if TYPE_CHECKING:
    from distill.data.targets import Targets
    from distill.teacher.model import Teacher

logger = logging.getLogger(__name__)


@dataclass
class StaticConfig(StudentConfig):
    vocab_size: int = 30522
    init: str = "context"  # "context": mean vector in context; "vocab": each token's vector alone
    shrinkage: float = 2.0  # pseudo-count pulling a rare token's context mean towards its vector alone
    factored: bool = True  # train through TableFactors (shared map, per-token weights, residual), then fold
    residual_lr: float = 0.1  # the residual rows' learning rate, as a fraction of the shared one
    # Whether each text gets the teacher's special tokens ([CLS] / [SEP], <s> / </s>) and their rows. A teacher's
    # mean pooling counts them, so they carry 2 / (n + 2) of a short text's vector. False for students saved before
    # (the field's default); `from_teacher` makes new ones with True unless told otherwise. Either way the saved
    # folder loads in sentence-transformers and model2vec with the student's vectors (`students.static_layout`).
    specials: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init not in ("context", "vocab"):
            raise DistillError(f"static init must be 'context' or 'vocab', not {self.init!r}")
        if self.vocab_size <= 0 or self.shrinkage < 0:
            raise DistillError("static vocab_size must be positive and shrinkage non-negative")


class StaticStudent(Student):
    kind = "static"
    config_class = StaticConfig

    def __init__(self, config: StaticConfig, tokenizer: Tokenizer) -> None:
        super().__init__(config, tokenizer)
        self.embedding = nn.Embedding(config.vocab_size, config.dim)
        self.factors: TableFactors | None = None

    @property
    def special_tokens(self) -> bool:  # type: ignore[override]
        return self.config.specials

    default_training: ClassVar[dict[str, Any]] = {"lr": 1e-2, "epochs": 10, "batch_size": 256, "patience": 2}

    @classmethod
    def uses_token_vectors(cls, options: dict[str, Any], token_loss_weight: float) -> bool:
        return options.get("init", "context") == "context"

    @classmethod
    def from_teacher(cls, teacher: Teacher, targets: Targets, **options: Any) -> StaticStudent:
        check_fits(teacher.tokenizer.backend_tokenizer, teacher.vocab_size, teacher.name)
        options.setdefault("specials", True)
        config = cls.config_from_teacher(teacher, targets, vocab_size=teacher.vocab_size, **options)
        student = cls(config, teacher.tokenizer.backend_tokenizer)
        if config.init == "vocab" or targets.token_mode is TokenTargets.NONE:
            if config.init == "context":
                logger.info("static init: each token's vector alone (--token-targets none keeps no token vectors)")
            student.init_table(targets.vocab_vectors)
            return student
        # NOTE: the special tokens the student never sees keep their vectors alone (pad, mask, and all without specials)
        added = set(student.token_ids([""])[0]) if config.specials else set()
        special = np.array([i for i in teacher.tokenizer.all_special_ids if i not in added], dtype=np.int64)
        stored = targets.token_vectors is not None
        blocks = stored_blocks(targets, special) if stored else teacher_blocks(teacher, targets, special)
        to_sentence_space = sentence_space(teacher, teacher.token_dim, config.dim)
        student.init_table(context_table(targets.vocab_vectors, blocks, config.shrinkage, transform=to_sentence_space))
        return student

    @classmethod
    def from_table(cls, table: torch.Tensor, tokenizer: Tokenizer, **fields: Any) -> StaticStudent:
        """A static student (no specials) with `table` (vocab, dim) as it is, e.g. a token generator's written out;
        `fields` are the other config fields (teacher, prompt, max_length)."""
        config = StaticConfig(dim=table.shape[1], vocab_size=table.shape[0], factored=False, specials=False, **fields)
        student = cls(config, tokenizer)
        student.init_table(table.detach().cpu().numpy())
        return student.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.factors is not None:
            return F.normalize(self.factors.pooled(input_ids, attention_mask), dim=-1)
        return F.normalize(masked_mean(self.embedding(input_ids), attention_mask), dim=-1)

    def init_table(self, table: np.ndarray) -> None:
        table = torch.from_numpy(np.array(table, dtype=np.float32))  # a copy: the cached targets are read-only
        with torch.no_grad():
            self.embedding.weight.copy_(table)
        self.factors = TableFactors(table) if self.config.factored else None

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        if self.factors is None:
            return super().param_groups(lr)
        shared = [self.factors.log_weight, self.factors.mix, self.factors.bias]
        # NOTE: the free residual rows learn 10x slower so shared structure is learned first.
        return [{"params": shared, "lr": lr}, {"params": [self.factors.residual], "lr": lr * self.config.residual_lr}]

    def table(self) -> torch.Tensor:
        """(vocab, dim): one plain table, the training factors folded in."""
        table = self.embedding.weight if self.factors is None else self.factors.table()
        return table.detach().contiguous()

    def state_to_save(self) -> None:
        """Nothing for the base file: `save_extra` writes the table as the loaders read it."""
        return None

    def finalize(self) -> None:
        if self.factors is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(self.factors.table())
            self.factors = None

    def save_extra(self, path: Path) -> None:
        """Lay the folder out so `SentenceTransformer(path)` and `model2vec.StaticModel.from_pretrained(path)` load
        it with the student's own vectors (see `students.static_layout`); the student's tokenizer beside it."""
        config = self.config
        try:
            write_layout(path, self.table(), self.tokenizer, specials=config.specials, prompt=config.prompt,
                         max_length=config.max_length)  # fmt: skip
        except DistillError as e:  # NOTE: a tokenizer the layout cannot fold into; the student itself still saves
            logger.warning("%s; this folder loads with students.load only", e)
            save_file({"embedding.weight": self.table()}, str(path / WEIGHTS_FILE))
            return
        if config.specials or config.prompt:
            self.tokenizer.save(str(path / STUDENT_TOKENIZER))

    @classmethod
    def load(cls, path: str | Path) -> StaticStudent:
        path = Path(path)
        config = cls.read_config(path)
        student = cls(config, Tokenizer.from_file(str(student_tokenizer_file(path))))
        table = load_file(str(path / WEIGHTS_FILE))["embedding.weight"]
        student.load_weights({"embedding.weight": student_rows(table, student.tokenizer, config.vocab_size)})
        return student.eval()


class TableFactors(nn.Module):
    """The table as trained: row t = weight_t * (base_t @ mix) + bias + residual_t.

    NOTE: a free 30k x dim table trained on a few thousand sentences overfits the rows of rare
    tokens. Here most of what training learns is shared by every token (one dim x dim map and a
    bias) or is one number per token (its weight, like SIF weighting but learned); the residual
    rows are free but start at zero. `table()` folds it all into one plain table for saving.
    """

    def __init__(self, base: torch.Tensor) -> None:
        super().__init__()
        vocab, dim = base.shape
        self.register_buffer("base", base.clone())  # (vocab, dim), the initial table
        self.log_weight = nn.Parameter(torch.zeros(vocab))
        self.mix = nn.Parameter(torch.eye(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.residual = nn.Parameter(torch.zeros(vocab, dim))

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, dim) masked mean of the rows of `input_ids`, without building the table.

        NOTE: the map and bias are applied after pooling (a mean commutes with them), which
        saves a (batch, seq, dim) x (dim, dim) product per step.
        """
        base = self.base[input_ids] * self.log_weight[input_ids].exp().unsqueeze(-1)  # (batch, seq, dim)
        pooled = masked_mean(base, attention_mask) @ self.mix + self.bias
        return pooled + masked_mean(self.residual[input_ids], attention_mask)

    def table(self) -> torch.Tensor:
        return (self.base * self.log_weight.exp().unsqueeze(-1)) @ self.mix + self.bias + self.residual


def masked_mean(vectors: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, seq, dim) -> (batch, dim) mean over the positions the mask keeps (zeros for none)."""
    mask = attention_mask.unsqueeze(-1).to(vectors.dtype)  # (batch, seq, 1)
    return (vectors * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def sentence_space(teacher: Teacher, token_dim: int, dim: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """What maps the teacher's token vectors (`token_dim`, its hidden size) into its sentence space (`dim`).

    The teacher's Dense layers after pooling, or None when it has none. Raises ValueError when the
    sizes differ and no Dense maps them: the targets and the teacher disagree, a bug, not a user's mistake.
    """
    dense = getattr(teacher, "dense", None)
    if dense is None:
        if token_dim != dim:
            raise ValueError(f"token vectors are {token_dim}-wide, sentence vectors {dim}-wide, and no Dense maps them")
        return None
    weight = next(dense.parameters(), None)
    device = weight.device if weight is not None else torch.device("cpu")

    def through_dense(block: torch.Tensor) -> torch.Tensor:  # (n, token_dim) -> (n, dim)
        with torch.inference_mode():
            return dense(block.to(device)).float().cpu()

    return through_dense


def stored_blocks(targets: Targets, special: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, token vectors) of the training texts' tokens, special ones left out, read from the cache in blocks."""
    for rows, train in targets.token_blocks(Split.TRAIN, texts=8192):
        ids = np.asarray(targets.token_ids[rows])
        keep = train & ~np.isin(ids, special)
        yield ids[keep], np.asarray(targets.token_vectors[rows])[keep]


def teacher_blocks(
    teacher: Teacher, targets: Targets, special: np.ndarray, chunk: int = 2048
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The same as `stored_blocks`, recomputed by the teacher (`--token-targets online`: none on disk)."""
    index = targets.indices(Split.TRAIN)
    logger.info("static init: running the teacher over %d training texts for token vectors in context", len(index))
    for first in range(0, len(index), chunk):
        for _, batch in teacher.token_batches(targets.texts.take(index[first : first + chunk])):
            keep = batch.attention_mask.bool().numpy() & ~np.isin(batch.input_ids.numpy(), special)
            yield batch.input_ids.numpy()[keep], batch.token_vectors.numpy()[keep]


def context_table(
    vocab_vectors: np.ndarray,
    blocks: Iterable[tuple[np.ndarray, np.ndarray]],
    shrinkage: float = 2.0,
    fit_min_count: int = 10,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """(vocab, dim): each token's mean vector in context, shrunk towards its vector alone.

    `blocks` gives (ids (k,), vectors (k, token_dim)) of tokens in context, a block at a time.
    A token's vector alone lives in a different region than its vectors in context, so it is
    first mapped by a least-squares affine fit (learned on tokens seen at least `fit_min_count`
    times); a token seen `c` times then gets (c * context_mean + k * mapped_alone) / (c + k).
    Tokens never seen in the training texts keep the mapped vector alone. `transform` maps blocks
    of token vectors into the space of `vocab_vectors` first (a teacher's Dense layers).
    """
    vocab, dim = vocab_vectors.shape
    sums = torch.zeros(vocab, dim, dtype=torch.float64)
    counts = torch.zeros(vocab, dtype=torch.float64)
    for block_ids, block_vectors in blocks:
        ids = torch.from_numpy(np.asarray(block_ids, dtype=np.int64))
        block = torch.from_numpy(np.asarray(block_vectors, dtype=np.float32))  # (k, token_dim)
        if transform is not None:
            block = transform(block)  # (k, dim)
        sums.index_add_(0, ids, block.double())
        counts += torch.bincount(ids, minlength=vocab).double()
    means = sums / counts.clamp(min=1)[:, None]
    alone = torch.from_numpy(np.asarray(vocab_vectors, dtype=np.float64))
    frequent = counts >= fit_min_count
    if int(frequent.sum()) <= 2 * dim:  # a small corpus: fit on every token seen at all
        frequent = counts > 0
    design = torch.cat([alone, torch.ones(vocab, 1, dtype=torch.float64)], dim=1)  # (vocab, dim + 1)
    x, y = design[frequent], means[frequent]
    # NOTE: ridge, so the fit stays defined when a tiny corpus has fewer tokens than dimensions.
    ridge = 1e-3 * x.pow(2).sum() / x.shape[1] * torch.eye(dim + 1, dtype=torch.float64)
    mapping = torch.linalg.solve(x.T @ x + ridge, x.T @ y)  # (dim + 1, dim)
    mapped = design @ mapping
    weight = (counts / (counts + shrinkage).clamp(min=1e-9))[:, None]
    logger.info("static init: %d of %d tokens seen in context", int((counts > 0).sum()), vocab)
    return (weight * means + (1 - weight) * mapped).float().numpy()
