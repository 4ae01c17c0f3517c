"""The targets cache: the teacher's vectors for a corpus, computed once and memory-mapped.

A cache folder is keyed by everything the vectors depend on (teacher weights and pooling,
corpus texts, max length). It is built chunk by chunk: each finished chunk is renamed into
place, so a run killed during extraction resumes from the last complete chunk. `meta.json` is
written last; a folder without it is never trusted as complete.

NOTE on token targets: storing every token vector in context (float16) costs disk, but
recomputing them means a full teacher forward pass per training epoch, which on CPU takes
minutes where reading the memory map takes well under a second. We store them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.corpus import Split, fingerprint
from distill.io import atomic_path, read_json, save_with, write_json
from distill.teacher import Teacher

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHUNK_TEXTS = 2048


@dataclass
class Targets:
    """The teacher's vectors for one corpus, memory-mapped from a cache folder."""

    root: Path
    texts: list[str]
    split: np.ndarray  # (n,) uint8 of Split
    sentence_vectors: np.ndarray  # (n, dim) float32
    token_ids: np.ndarray | None  # (tokens,) int32, teacher tokenization incl. special tokens
    token_offsets: np.ndarray | None  # (n + 1,) int64 into token_ids / token_vectors
    token_vectors: np.ndarray | None  # (tokens, dim) float16, last hidden state
    vocab_vectors: np.ndarray  # (vocab, dim) float32, each token through the teacher alone

    @property
    def dim(self) -> int:
        """Dimension of the sentence vectors (after the teacher's Dense modules, if any)."""
        return int(self.sentence_vectors.shape[1])

    def indices(self, split: Split) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def texts_of(self, split: Split) -> list[str]:
        return [self.texts[i] for i in self.indices(split)]

    def texts_and_vectors(self, split: Split, limit: int | None = None) -> tuple[list[str], np.ndarray]:
        """The (first `limit`) texts of `split` and the teacher's (n, dim) float32 sentence vectors for them."""
        index = self.indices(split)[:limit]
        return [self.texts[i] for i in index], np.asarray(self.sentence_vectors[index])

    def tokens_of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (seq,) and token vectors (seq, dim) of text `i`."""
        if self.token_vectors is None:
            raise ValueError("these targets were built without token vectors")
        a, b = self.token_offsets[i], self.token_offsets[i + 1]
        return self.token_ids[a:b], self.token_vectors[a:b]

    def token_rows(self, split: Split) -> np.ndarray:
        """(tokens,) rows of `token_ids` / `token_vectors` that belong to the texts of `split`."""
        if self.token_offsets is None:
            raise ValueError("these targets were built without token vectors")
        spans = [np.arange(self.token_offsets[i], self.token_offsets[i + 1]) for i in self.indices(split)]
        return np.concatenate(spans or [np.zeros(0, np.int64)])

    @classmethod
    def open(cls, root: Path) -> Targets:
        meta = read_json(root / "meta.json")
        texts = (root / "texts.txt").read_text().split("\n")[: meta["texts"]]
        vocab_root = root.parent / meta["vocab_dir"]  # a sibling folder, so the cache can be moved
        has_tokens = meta["token_targets"]
        return cls(
            root=root,
            texts=texts,
            split=np.load(root / "split.npy"),
            sentence_vectors=np.load(root / "sentence_vectors.npy", mmap_mode="r"),
            token_ids=np.load(root / "token_ids.npy", mmap_mode="r") if has_tokens else None,
            token_offsets=np.load(root / "token_offsets.npy") if has_tokens else None,
            token_vectors=np.load(root / "token_vectors.npy", mmap_mode="r") if has_tokens else None,
            vocab_vectors=np.load(vocab_root / "vocab_vectors.npy", mmap_mode="r"),
        )


def cache_key(teacher: Teacher, texts: Sequence[str], token_targets: bool) -> str:
    spec = {
        "format": FORMAT_VERSION,
        "teacher": teacher.fingerprint,
        "corpus": fingerprint(texts),
        "max_length": teacher.max_length,
        "pooling": teacher.pooling.value,
        "normalize": teacher.normalize,
        "token_targets": token_targets,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def build_targets(
    teacher: Teacher,
    texts: Sequence[str],
    split: np.ndarray,
    cache_dir: Path,
    *,
    token_targets: bool = True,
    batch_size: int = 64,
    progress: bool = False,
) -> Targets:
    """Compute (or reuse) the teacher's targets for `texts` under `cache_dir`."""
    cache_dir = Path(cache_dir)
    vocab_dir = build_vocab_vectors(teacher, cache_dir, progress=progress)
    root = cache_dir / f"targets-{cache_key(teacher, texts, token_targets)}"
    if (root / "meta.json").is_file():
        logger.info("reusing cached targets in %s", root)
        return Targets.open(root)
    partial = root / "partial"
    partial.mkdir(parents=True, exist_ok=True)
    chunks = range(0, len(texts), CHUNK_TEXTS)
    done = [c for c in chunks if (partial / f"{c:09d}.npz").is_file()]
    if done:
        logger.info("resuming target extraction: %d of %d chunks already complete", len(done), len(chunks))
    for number, first in enumerate(chunks):
        path = partial / f"{first:09d}.npz"
        if not path.is_file():
            part = _extract_chunk(
                teacher,
                texts[first : first + CHUNK_TEXTS],
                token_targets,
                batch_size,
                progress,
                desc=f"targets {number + 1}/{len(chunks)}",
            )
            save_with(path, lambda tmp, part=part: _save_npz(tmp, part))
    _assemble(root, partial, chunks, texts, split, token_targets, teacher.token_dim)
    write_json(root / "meta.json", {
        "format": FORMAT_VERSION, "teacher": teacher.name, "teacher_fingerprint": teacher.fingerprint,
        "texts": len(texts), "dim": teacher.dim, "token_dim": teacher.token_dim, "max_length": teacher.max_length,
        "pooling": teacher.pooling.value, "normalize": teacher.normalize, "token_targets": token_targets,
        "prompt": teacher.prompt, "vocab_dir": vocab_dir.name,
    })  # fmt: skip
    shutil.rmtree(partial, ignore_errors=True)
    return Targets.open(root)


def build_vocab_vectors(teacher: Teacher, cache_dir: Path, progress: bool = False) -> Path:
    """The per-token vectors depend only on the teacher, so they have a cache folder of their own."""
    root = Path(cache_dir) / f"vocab-{teacher.fingerprint[:20]}"
    path = root / "vocab_vectors.npy"
    if path.is_file():
        logger.info("reusing cached vocabulary vectors in %s", root)
        return root
    vectors = teacher.vocab_vectors(progress=progress)
    save_with(path, lambda tmp: _save_npy(tmp, vectors))
    return root


def _extract_chunk(
    teacher: Teacher, texts: Sequence[str], token_targets: bool, batch_size: int, progress: bool, desc: str
) -> dict[str, np.ndarray]:
    sentence = np.zeros((len(texts), teacher.dim), dtype=np.float32)
    ids: list[np.ndarray] = [np.zeros(0, np.int32)] * len(texts)
    vectors: list[np.ndarray] = [np.zeros((0, teacher.token_dim), np.float16)] * len(texts)
    for index, batch in teacher.batches(texts, batch_size, progress, desc=desc):
        sentence[index] = batch.sentence_vectors.float().numpy()
        if token_targets:
            lengths = batch.attention_mask.sum(dim=1).tolist()
            for row, i in enumerate(index):
                ids[i] = batch.input_ids[row, : lengths[row]].numpy().astype(np.int32)
                vectors[i] = batch.token_vectors[row, : lengths[row]].numpy().astype(np.float16)
    part = {"sentence_vectors": sentence}
    if token_targets:
        part["lengths"] = np.array([len(x) for x in ids], dtype=np.int64)
        part["token_ids"] = np.concatenate(ids)
        part["token_vectors"] = np.concatenate(vectors)
    return part


def _assemble(
    root: Path,
    partial: Path,
    chunks: range,
    texts: Sequence[str],
    split: np.ndarray,
    token_targets: bool,
    token_dim: int,
) -> None:
    """Join the chunk files into memory-mappable arrays, one atomic file at a time."""
    parts = [np.load(partial / f"{first:09d}.npz") for first in chunks]
    save_with(root / "sentence_vectors.npy",
              lambda tmp: _save_npy(tmp, np.concatenate([p["sentence_vectors"] for p in parts])))  # fmt: skip
    save_with(root / "split.npy", lambda tmp: _save_npy(tmp, np.asarray(split, dtype=np.uint8)))
    with atomic_path(root / "texts.txt") as tmp:
        tmp.write_text("\n".join(texts))
    if not token_targets:
        return
    lengths = np.concatenate([p["lengths"] for p in parts])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    save_with(root / "token_offsets.npy", lambda tmp: _save_npy(tmp, offsets))
    save_with(root / "token_ids.npy", lambda tmp: _save_npy(tmp, np.concatenate([p["token_ids"] for p in parts])))
    with atomic_path(root / "token_vectors.npy") as tmp:
        # NOTE: written through a memory map so a large corpus never needs all token vectors in RAM.
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(int(offsets[-1]), token_dim))
        row = 0
        for part in parts:
            block = part["token_vectors"]
            out[row : row + len(block)] = block
            row += len(block)
        out.flush()
        del out


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
