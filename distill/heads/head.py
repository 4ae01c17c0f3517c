"""A task head: its config (`head.json`), the torch module (sentence or token vectors -> logits), how it is trained
(`HeadTrainConfig`), and the split and class weights its training uses.

A head folder holds `head.json` (labels, sizes, the model it was trained on, its validation metrics) and
`head.safetensors`; `ClassifierHead.load(folder)` reads it back. Training is `distill.heads.classifier`
(sentence vectors), `distill.heads.tagging` (token vectors) and `distill.heads.tuning` (with the model).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from distill.errors import DistillError
from distill.heads.tune_config import TUNES
from distill.io import atomic_dir, read_json, write_json

HEAD_CONFIG = "head.json"
HEAD_WEIGHTS = "head.safetensors"
FORMAT_VERSION = 1
TASKS = ("classify", "tokens")  # a label per text (sentence vectors), or a tag per word (token vectors)


@dataclass
class HeadConfig:
    """What `head.json` holds: enough to rebuild the head and to know what it expects as input."""

    labels: list[str]
    dim: int  # the input vectors' dimension: sentence vectors, or token vectors for a tokens head
    hidden: int = 0  # 0: a single Linear (logistic regression); else one hidden layer this wide
    task: str = "classify"  # one of TASKS; a head.json written before tokens heads has none: classify
    model: str = ""  # the model whose vectors it was trained on
    encoder: str = ""  # what that model was (a student, an export, a teacher)
    metrics: dict[str, Any] = field(default_factory=dict)
    # "none": the model is frozen, its vectors the teacher's space; else trained with the head (`heads.tuning`)
    tune: str = "none"

    def __post_init__(self) -> None:
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise DistillError(f"a head needs at least 2 distinct labels, not {self.labels!r}")
        if self.dim <= 0 or self.hidden < 0:
            raise DistillError(f"head dim ({self.dim}) must be positive and hidden ({self.hidden}) not negative")
        if self.task not in TASKS:
            raise DistillError(f"unknown head task {self.task!r}; choose from: {', '.join(TASKS)}")
        if self.tune not in TUNES:
            raise DistillError(f"unknown tune setting {self.tune!r}; choose from: {', '.join(TUNES)}")

    @property
    def kind(self) -> str:
        return "mlp" if self.hidden else "linear"


class ClassifierHead(nn.Module):
    """(batch, dim) sentence vectors (token vectors for a tokens head) -> (batch, classes) logits."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        classes = len(config.labels)
        if config.hidden:
            hidden = [nn.Linear(config.dim, config.hidden), nn.GELU()]
            self.layers = nn.Sequential(*hidden, nn.Linear(config.hidden, classes))  # (batch, classes)
        else:
            self.layers = nn.Sequential(nn.Linear(config.dim, classes))  # logistic regression

    @property
    def labels(self) -> list[str]:
        return self.config.labels

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.layers(vectors)

    @torch.inference_mode()
    def predict(self, vectors: np.ndarray) -> list[str]:
        """The label of each row of `vectors` (n, dim)."""
        if vectors.ndim != 2 or vectors.shape[1] != self.config.dim:
            raise DistillError(f"the head takes {self.config.dim}-dim vectors; the model gives {vectors.shape[-1]}: "
                               f"use the model it was trained on ({self.config.model})")  # fmt: skip
        was_training = self.training
        self.eval()
        logits = self(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)))
        self.train(was_training)
        return [self.labels[i] for i in logits.argmax(dim=1).tolist()]

    def save(self, path: str | Path) -> Path:
        """Write `head.json` and `head.safetensors` to `path` atomically."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            self.write_files(tmp)
        return path

    def write_files(self, directory: Path) -> None:
        """`head.json` and `head.safetensors` into `directory` (not atomic: `save` is)."""
        config = dataclasses.asdict(self.config)
        write_json(directory / HEAD_CONFIG, {"format": FORMAT_VERSION, "kind": self.config.kind, "config": config})
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(directory / HEAD_WEIGHTS))

    @classmethod
    def load(cls, path: str | Path) -> ClassifierHead:
        path = Path(path)
        if not (path / HEAD_CONFIG).is_file() or not (path / HEAD_WEIGHTS).is_file():
            raise DistillError(f"{str(path)!r} is not a head folder (no {HEAD_CONFIG} and {HEAD_WEIGHTS} in it); "
                               "make one with `distill head train`")  # fmt: skip
        try:
            config = HeadConfig(**read_json(path / HEAD_CONFIG)["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise DistillError(f"{str(path / HEAD_CONFIG)!r} is not a valid head config ({e})") from e
        head = cls(config)
        head.load_state_dict(load_file(str(path / HEAD_WEIGHTS)))
        return head.eval()


@dataclass
class HeadTrainConfig:
    """How a head is trained on frozen vectors."""

    hidden: int = 0
    seed: int = 0
    valid_fraction: float = 0.1  # held out per class (stratified): chooses the linear head's C, stops the MLP
    # the linear head: L2-regularised logistic regression solved by L-BFGS for each inverse strength C (as
    # scikit-learn's C), the one of best validation score refit on all the data
    c_grid: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
    max_iter: int = 500  # L-BFGS iterations at most
    folds: int = 5  # a classifier's C is chosen by this many stratified folds of all its rows
    refit: bool = True  # refit the chosen C on the training and validation rows together
    # the MLP: AdamW with early stopping
    lr: float = 1e-2
    weight_decay: float = 1e-4
    epochs: int = 300
    patience: int = 30  # epochs without a better validation score (or, at an equal one, 0.1% lower loss)
    batch_size: int = 1024  # the whole training set in one step when it is smaller
    # weight each class by inverse frequency, so a rare class counts as much as a common one; None: by task,
    # yes for a classifier (macro-F1), no for a tagger. NOTE: weighted, the CoNLL-2003 slice's taggers found
    # entities everywhere: entity F1 0.407 against 0.451 unweighted (teacher), 0.380 against 0.400 (transformer).
    balanced: bool | None = None

    def __post_init__(self) -> None:
        if not 0 < self.valid_fraction < 1:
            raise DistillError(f"valid_fraction must be between 0 and 1, not {self.valid_fraction}")
        if min(self.epochs, self.patience, self.batch_size, self.max_iter) < 1 or self.hidden < 0 or self.lr <= 0:
            raise DistillError("epochs, patience, batch size, max_iter and lr must be positive and hidden not negative")
        if not self.c_grid or min(self.c_grid) <= 0:
            raise DistillError(f"c_grid must hold positive values, not {self.c_grid!r}")


def stratified_split(label_ids: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) indices with about `fraction` of each class in valid (at least one of a class that has two)."""
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for c in np.unique(label_ids):
        index = rng.permutation(np.flatnonzero(label_ids == c))
        take = max(1, round(len(index) * fraction)) if len(index) > 1 else 0
        valid.append(index[:take])
        train.append(index[take:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(valid))


def class_weights(label_ids: np.ndarray, classes: int) -> np.ndarray:
    """Inverse-frequency weights, n / (classes * count): 1 for every class when they are balanced."""
    counts = np.bincount(label_ids, minlength=classes).astype(np.float64)
    return np.where(counts > 0, len(label_ids) / (classes * np.maximum(counts, 1)), 0.0)
