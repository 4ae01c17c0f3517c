"""The one interface every student shares.

A student is an `nn.Module` with a typed config dataclass, a `forward(input_ids,
attention_mask) -> (batch, dim)` on plain tensors (so `torch.onnx.export` needs no adapter),
its own tokenizer, and `save(dir)` / `load(dir)` through a JSON config plus safetensors.
A new student is one new module in `students/` with one `Student` subclass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import nn

from distill.errors import DistillError
from distill.io import atomic_dir, read_json, write_json

if TYPE_CHECKING:
    from distill.data.targets import Targets
    from distill.teacher.model import Teacher

CONFIG_FILE = "student.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
FORMAT_VERSION = 1


@dataclass
class StudentConfig:
    """Fields every student has; subclasses add their own."""

    dim: int
    max_length: int = 256
    teacher: str = ""
    prompt: str = ""  # put before every text, as the teacher's targets were made (e5's "query: ")

    def __post_init__(self) -> None:
        if self.dim <= 0 or self.max_length <= 0:
            raise DistillError(f"dim ({self.dim}) and max_length ({self.max_length}) must be positive")


class Student(nn.Module):
    """Base class: subclasses set `kind`, `config_class`, `special_tokens` and write `forward`."""

    kind: ClassVar[str]
    config_class: ClassVar[type[StudentConfig]] = StudentConfig
    special_tokens: ClassVar[bool] = True  # whether the tokenizer adds [CLS] / [SEP]
    default_training: ClassVar[dict[str, Any]] = {}  # `TrainConfig` fields this kind trains best with

    def __init__(self, config: StudentConfig, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = prepare_tokenizer(tokenizer, config.max_length)

    @classmethod
    def check_teacher(cls, teacher: Teacher, **options: Any) -> None:
        """Raise DistillError, before any work, when this kind cannot be built from `teacher` with `options`."""

    @classmethod
    def uses_token_vectors(cls, options: dict[str, Any], token_loss_weight: float) -> bool:
        """Whether this kind, with these options and this token loss weight, learns from the teacher's token
        vectors."""
        return token_loss_weight > 0

    @classmethod
    def from_teacher(cls, teacher: Teacher, targets: Targets, **options: Any) -> Student:
        """A new student initialised from the teacher and its targets; `options` are config fields."""
        raise NotImplementedError

    @classmethod
    def config_from_teacher(cls, teacher: Teacher, targets: Targets, **fields: Any) -> Any:
        """This kind's config: the fields every student takes from its teacher and targets, plus `fields`."""
        return cls.config_class(
            dim=targets.dim, max_length=teacher.max_length, teacher=teacher.name, prompt=teacher.prompt, **fields
        )

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def device(self) -> torch.device:
        """Where the student's weights are (the CPU unless it was moved)."""
        return next(self.parameters(), torch.empty(0)).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, seq) token ids and mask -> (batch, dim) L2-normalised sentence vectors."""
        raise NotImplementedError

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, with the prompt before it and truncated to the max length."""
        return self.text_encoder()(texts)

    def text_encoder(self) -> TextEncoder:
        """This student's tokenization alone: small and picklable, for data-loading worker processes."""
        return TextEncoder(self.tokenizer, self.config.prompt, self.special_tokens)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return pad(self.token_ids(texts))

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """(n, dim) float32 L2-normalised vectors, in the order of `texts`."""
        was_training = self.training
        self.eval()
        ids = self.token_ids(texts)
        order = np.argsort([-len(x) for x in ids], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = pad([ids[i] for i in index])
            vectors = self(batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device))
            out[index] = vectors.float().cpu().numpy()
        self.train(was_training)
        return out

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; a student may give some parameters their own learning rate."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def finalize(self) -> None:
        """Called once training ends: fold training-only parameters into the saved form."""

    def export_module(self) -> nn.Module:
        """What `distill export` traces into ONNX: the student itself, unless it has a smaller equivalent form."""
        return self

    def attention_shape(self) -> tuple[int, int] | None:
        """(attention heads, hidden size) of a student made of transformer layers, for `distill export`'s
        graph fusions; None for a student without attention."""
        return None

    def state_to_save(self) -> dict[str, torch.Tensor] | None:
        """The weights for `model.safetensors`; None when `save_extra` writes that file itself."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()}

    def save(self, path: str | Path) -> Path:
        """Write config, weights and tokenizer to `path` atomically."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            write_json(
                tmp / CONFIG_FILE,
                {"kind": self.kind, "format": FORMAT_VERSION, "config": dataclasses.asdict(self.config)},
            )
            weights = self.state_to_save()
            if weights is not None:
                save_file(weights, str(tmp / WEIGHTS_FILE))
            self.tokenizer.save(str(tmp / TOKENIZER_FILE))
            self.save_extra(tmp)
        return path

    def save_extra(self, path: Path) -> None:
        """Hook for extra files (for example a sentence-transformers layout)."""

    @classmethod
    def load(cls, path: str | Path) -> Student:
        path = Path(path)
        config = cls.read_config(path)
        student = cls(config, Tokenizer.from_file(str(path / TOKENIZER_FILE)))
        student.load_weights(load_file(str(path / WEIGHTS_FILE)))
        return student.eval()

    @classmethod
    def read_config(cls, path: Path) -> Any:
        """This kind's config from a saved folder; one that an older version wrote is a clear error."""
        try:
            return cls.config_class(**read_json(path / CONFIG_FILE)["config"])
        except TypeError as e:
            raise DistillError(f"{str(path)!r} was saved by another version of distill-embeddings ({e}); "
                               "train it again with `distill run`") from e  # fmt: skip

    def load_weights(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state)


@dataclass(frozen=True)
class TextEncoder:
    """Texts -> token id lists as a student reads them: its tokenizer, its prompt, its special tokens or none."""

    tokenizer: Tokenizer
    prompt: str = ""
    special_tokens: bool = True

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        texts = [self.prompt + t for t in texts] if self.prompt else list(texts)
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=self.special_tokens)]


def prepare_tokenizer(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    """A copy of `tokenizer` that truncates to `max_length` and never pads (students pad themselves)."""
    tokenizer = Tokenizer.from_str(tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def pad(ids: Sequence[Sequence[int]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad token id lists into (batch, seq) `input_ids` and `attention_mask`."""
    length = max((len(x) for x in ids), default=0) or 1
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), length), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
        attention_mask[row, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}
