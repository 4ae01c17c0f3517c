"""What the task evaluators see of a model: a `TaskEncoder` (one model on one backend), and the on-disk vector cache.

A task evaluator's contract is `__call__(encoder) -> dict[str, float]`, where `encoder` is a
`TaskEncoder` or a bare `texts -> (n, dim)` function. A `TaskEncoder` adds what some tasks need:
its own query and document prompts (the teacher's, where its files name them), an identity for
caching the vectors of a large corpus, and whether its vectors live in the teacher's space.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.io import atomic_path

logger = logging.getLogger(__name__)

Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, dim) vectors


@dataclass
class TaskEncoder:
    """One model on one backend, as the task evaluators see it."""

    name: str  # its column in the results table: "static", "static:onnx_int8", "teacher"
    encode: Encode
    query: Encode | None = None  # queries with the model's own query prompt; None: `encode`
    document: Encode | None = None  # documents with its own document prompt; None: `encode`
    identity: Callable[[], str] | None = None  # everything its vectors depend on (weights, max length, prompt)
    same_space: bool = True  # whether its vectors live in the teacher's space (it can search the teacher's index)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray((self.query or self.encode)(texts), dtype=np.float32)

    def documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray((self.document or self.encode)(texts), dtype=np.float32)


def as_encoder(model: TaskEncoder | Encode) -> TaskEncoder:
    """A bare encode function as a `TaskEncoder` (uncached, no prompts of its own)."""
    return model if isinstance(model, TaskEncoder) else TaskEncoder(name="model", encode=model)


def fingerprint(parts: Iterable[str | bytes]) -> str:
    """A sha256 of a sequence of strings or bytes (each one's length goes in first, so parts cannot run together)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def files_fingerprint(paths: Iterable[Path]) -> str:
    """A sha256 of the files' names and bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            while block := f.read(2**20):
                digest.update(block)
    return digest.hexdigest()


class VectorCache:
    """Document vectors on disk, one `.npy` a model and corpus: `<root>/<sha256 of both>.npy`, written atomically.

    The key is the model's identity (its weights, max length and prompt: what its vectors depend on)
    and the corpus's fingerprint (the texts it embeds), so a changed model or corpus never reads an old file.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, identity: str, corpus: str) -> Path:
        return self.root / f"{fingerprint([identity, corpus])[:32]}.npy"

    def vectors(self, encoder: TaskEncoder, texts: Sequence[str], corpus: str) -> np.ndarray:
        """`encoder.documents(texts)`, read from the cache when there, else embedded and stored."""
        if encoder.identity is None:
            return encoder.documents(texts)
        path = self.path(encoder.identity(), corpus)
        if path.is_file():
            vectors = np.load(path)
            if vectors.shape[0] == len(texts):
                logger.info("%s: %d document vectors from the cache (%s)", encoder.name, len(texts), path.name)
                return vectors
        vectors = encoder.documents(texts)
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            np.save(f, vectors)  # NOTE: to an open file: np.save would add ".npy" to the temporary name
        return vectors
