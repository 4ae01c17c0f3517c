"""The targets cache: the teacher's vectors for a corpus, computed once and memory-mapped.

A cache folder is keyed by everything the vectors depend on (teacher weights and pooling,
corpus texts, their split, max length, whether token vectors are kept). It is built chunk by
chunk: each finished chunk is renamed into place, so a run killed during extraction resumes from
the last complete chunk. With several processes each chunk belongs to one rank (chunk k to rank
k mod world), and a killed multi-process run resumes the same way, with any number of processes.
`meta.json` is written last; a folder without it is never trusted as complete.

The texts live beside it in an indexed file (`distill.data.textstore`), never as one Python list,
and every array is written and read through memory maps, so memory does not grow with the corpus.

Token targets (`--token-targets`): the teacher's token ids are always kept (4 bytes a token);
its token vectors in context (float16, 2 x its hidden size bytes a token: about 23 KB a
sentence for a 384-wide teacher) are kept with `store`. `online` recomputes them in the
training loop instead, `none` never uses them. `auto` picks by corpus size and device.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from distill import distributed
from distill.data.corpus import Split
from distill.data.textstore import TextStore, write_store
from distill.errors import DistillError
from distill.io import atomic_path, read_json, save_with, write_json
from distill.teacher.model import Teacher

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
CHUNK_TEXTS = 2048  # texts per cache chunk: the unit of resuming, of sharing out by rank, and of length sorting
STORE_LIMIT = 50 * 2**30  # `auto` stores token vectors up to this many bytes (and half the free disk)


class TokenTargets(str, Enum):
    AUTO = "auto"
    STORE = "store"  # token vectors on disk, read back by memory map
    ONLINE = "online"  # token vectors computed by the teacher inside the training loop
    NONE = "none"  # sentence targets only: no token loss, the static table starts from vocabulary vectors


@dataclass
class Targets:
    """The teacher's vectors for one corpus, memory-mapped from a cache folder."""

    root: Path
    texts: TextStore  # random access to the texts without holding them
    split: np.ndarray  # (n,) uint8 of Split
    sentence_vectors: np.ndarray  # (n, dim) float32
    token_ids: np.ndarray  # (tokens,) int32, teacher tokenization incl. special tokens
    token_offsets: np.ndarray  # (n + 1,) int64 into token_ids / token_vectors
    token_vectors: np.ndarray | None  # (tokens, token_dim) float16, last hidden state; None unless stored
    vocab_vectors: np.ndarray  # (vocab, dim) float32, each token through the teacher alone
    token_mode: TokenTargets = TokenTargets.STORE  # where token vectors come from in this run (online: the teacher)
    collection_texts: int | None = None  # in this run, how many texts from the first are the corpus's own passages

    @property
    def dim(self) -> int:
        """Dimension of the sentence vectors (after the teacher's Dense modules, if any)."""
        return int(self.sentence_vectors.shape[1])

    def indices(self, split: Split) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def texts_of(self, split: Split) -> list[str]:
        return self.texts.take(self.indices(split))

    def texts_and_vectors(self, split: Split, limit: int | None = None) -> tuple[list[str], np.ndarray]:
        """The (first `limit`) texts of `split` and the teacher's (n, dim) float32 sentence vectors for them."""
        index = self.indices(split)[:limit]
        return self.texts.take(index), np.asarray(self.sentence_vectors[index])

    def token_counts(self) -> np.ndarray:
        """(n,) teacher tokens of each text, special tokens included."""
        return np.diff(self.token_offsets)

    def tokens_of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (seq,) and token vectors (seq, dim) of text `i`."""
        if self.token_vectors is None:
            raise ValueError("these targets were built without token vectors")
        a, b = self.token_offsets[i], self.token_offsets[i + 1]
        return self.token_ids[a:b], self.token_vectors[a:b]

    def iter_texts(self, split: Split, limit: int | None = None, block: int = 8192) -> Iterator[str]:
        """The (first `limit`) texts of `split`, streamed from the text store a block at a time."""
        index = self.indices(split)[:limit]
        for first in range(0, len(index), block):
            yield from self.texts.take(index[first : first + block])

    def token_blocks(self, split: Split, texts: int = 65536) -> Iterator[tuple[slice, np.ndarray]]:
        """(rows, keep): consecutive blocks of token rows, and which of them belong to the texts of `split`.

        NOTE: in blocks of `texts` texts, so no (tokens,) array of the whole corpus is ever made.
        """
        counts = self.token_counts()
        for first in range(0, len(counts), texts):
            last = min(first + texts, len(counts))
            keep = np.repeat(self.split[first:last] == split, counts[first:last])
            yield slice(int(self.token_offsets[first]), int(self.token_offsets[last])), keep

    def token_id_counts(self, split: Split, minlength: int = 0) -> np.ndarray:
        """(vocab,) how often each token id occurs in the texts of `split`."""
        size = max(minlength, int(np.max(self.token_ids, initial=-1)) + 1)
        total = np.zeros(size, dtype=np.int64)
        for rows, keep in self.token_blocks(split):
            total += np.bincount(np.asarray(self.token_ids[rows])[keep], minlength=size)
        return total

    def __reduce__(self) -> tuple:
        """Pickled as its folder, reopened (memory-mapped again) where it is unpickled: a data-loading worker."""
        return _reopen, (self.root, self.token_mode)

    @classmethod
    def open(cls, root: Path) -> Targets:
        meta = read_json(root / "meta.json")
        if meta.get("format") != FORMAT_VERSION:
            raise DistillError(f"the targets in {root} were made by another version of distill; delete the folder "
                               "(or run `make clean`) and run again")  # fmt: skip
        has_vectors = meta["token_vectors"]
        # NOTE: texts and vocabulary vectors are sibling folders, so the cache can be moved
        return cls(
            root=root,
            texts=TextStore.open(root.parent / meta["texts_dir"]),
            split=np.load(root / "split.npy"),
            sentence_vectors=np.load(root / "sentence_vectors.npy", mmap_mode="r"),
            token_ids=np.load(root / "token_ids.npy", mmap_mode="r"),
            token_offsets=np.load(root / "token_offsets.npy", mmap_mode="r"),
            token_vectors=np.load(root / "token_vectors.npy", mmap_mode="r") if has_vectors else None,
            vocab_vectors=np.load(root.parent / meta["vocab_dir"] / "vocab_vectors.npy", mmap_mode="r"),
            token_mode=TokenTargets.STORE if has_vectors else TokenTargets.NONE,
        )


def _reopen(root: Path, token_mode: TokenTargets) -> Targets:
    targets = Targets.open(root)
    targets.token_mode = token_mode
    return targets


def cache_key(teacher: Teacher, corpus_fingerprint: str, split: np.ndarray, token_vectors: bool) -> str:
    spec = {
        "format": FORMAT_VERSION,
        "teacher": teacher.fingerprint,
        "corpus": corpus_fingerprint,
        # NOTE: the split is kept with the vectors, so another --valid-fraction must not reuse them
        "split": hashlib.sha256(np.ascontiguousarray(split, dtype=np.uint8).tobytes()).hexdigest(),
        "max_length": teacher.max_length,
        "pooling": teacher.pooling.value,
        "normalize": teacher.normalize,
        "token_vectors": token_vectors,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def targets_root(cache_dir: Path, teacher: Teacher, texts: TextStore, split: np.ndarray, token_vectors: bool) -> Path:
    return Path(cache_dir) / f"targets-{cache_key(teacher, texts.fingerprint, split, token_vectors)}"


def disk_size(size: float) -> str:
    """A size in bytes as a person reads it: 420 kB, 3.5 MB, 160 MB, 1.4 GiB."""
    if size >= 2**30:
        return f"{size / 2**30:.1f} GiB"
    if size >= 2**20:
        return f"{size / 2**20:.{1 if size < 10 * 2**20 else 0}f} MB"
    return f"{max(size, 0) / 2**10:.0f} kB"


def choose_token_targets(
    requested: TokenTargets | str, *, needed: bool, device_type: str, stored_bytes: float, free_bytes: float
) -> tuple[TokenTargets, str]:
    """The token-targets mode and why: `requested` unless it is `auto`.

    NOTE (`python -m eval.experiments.trials token-targets`, 2 CPU cores, default teacher, batches of 32):
    reading a batch's token vectors from the cache adds 2-3 ms, recomputing them takes 290-390 ms,
    as long as a transformer student's whole step (310-360 ms): `online` doubles the step on a
    CPU, so storing wins wherever the disk allows. On a GPU the forward pass is cheap next to a
    large corpus's vectors on disk (not measured here: no GPU was lent), so `online` takes over
    there when they would not fit.
    """
    requested = TokenTargets(requested)
    if requested is not TokenTargets.AUTO:
        return requested, "as asked"
    size = disk_size(stored_bytes)
    if not needed:
        return TokenTargets.NONE, "no student uses token vectors"
    if stored_bytes <= min(STORE_LIMIT, free_bytes / 2):
        return TokenTargets.STORE, f"token vectors of this corpus take about {size} on disk"
    limit = disk_size(min(STORE_LIMIT, free_bytes / 2))
    if device_type != "cpu":
        return (
            TokenTargets.ONLINE,
            f"token vectors would take about {size} (over {limit}); the {device_type} "
            "teacher recomputes them per batch",
        )
    return (
        TokenTargets.NONE,
        f"token vectors would take about {size} (over {limit}) and recomputing them on the "
        "CPU costs a teacher pass a step; pass --token-targets online to do it anyway",
    )


def estimate_token_bytes(teacher: Teacher, texts: TextStore, sample: int = 2000) -> float:
    """Bytes the stored token vectors of `texts` would take: tokens a byte on a sample, times the corpus's bytes."""
    lengths = texts.byte_lengths()
    if len(lengths) == 0:
        return 0.0
    first = texts[: min(sample, len(texts))]
    encoded = teacher.tokenizer(first, truncation=True, max_length=teacher.max_length)["input_ids"]
    tokens = sum(len(ids) for ids in encoded)
    per_byte = tokens / max(1, int(lengths[: len(first)].sum()))
    return per_byte * float(lengths.sum()) * teacher.token_dim * 2


def build_targets(
    teacher: Teacher,
    texts: TextStore | Sequence[str],
    split: np.ndarray,
    cache_dir: Path,
    *,
    token_vectors: bool = True,
    batch_tokens: int = 2048,
    chunk_texts: int | None = None,
    progress: bool = False,
) -> Targets:
    """Compute (or reuse) the teacher's targets for `texts` under `cache_dir`, shared out over the ranks.

    `texts` may be a list (written to the cache as a text store first); `token_vectors`: keep
    the token vectors in context (`store`), not only the token ids; `chunk_texts`: texts a chunk
    (default CHUNK_TEXTS), the unit that ranks share out.
    """
    cache_dir = Path(cache_dir)
    here = distributed.group()
    store = texts if isinstance(texts, TextStore) else store_texts(texts, cache_dir)
    root = targets_root(cache_dir, teacher, store, split, token_vectors)
    if (root / "meta.json").is_file():
        logger.info("reusing cached targets in %s", root)
        vocab_dir = _vocab_dir(cache_dir, teacher)
        if not (vocab_dir / "vocab_vectors.npy").is_file() and here.is_main:
            build_vocab_vectors(teacher, cache_dir, progress=progress)
        distributed.barrier()
        return Targets.open(root)
    size = chunk_texts or CHUNK_TEXTS
    partial = root / f"partial-{size}"  # NOTE: chunk files are named by their first text, so one folder a size
    partial.mkdir(parents=True, exist_ok=True)
    chunks = range(0, len(store), size)
    mine = distributed.shard(list(enumerate(chunks)), here)
    done = [c for c in chunks if (partial / f"{c:09d}.npz").is_file()]
    if done:
        logger.info("resuming target extraction: %d of %d chunks already complete", len(done), len(chunks))
    show = progress and here.is_main
    for number, first in mine:
        path = partial / f"{first:09d}.npz"
        if not path.is_file():
            part = _extract_chunk(teacher, store[first : first + size], token_vectors, batch_tokens, show,
                                  desc=f"targets {number + 1}/{len(chunks)}")  # fmt: skip
            save_with(path, lambda tmp, part=part: _save_npz(tmp, part))
    if here.rank == here.world - 1:  # NOTE: the last rank, so rank 0 is not also the one that joins the chunks
        build_vocab_vectors(teacher, cache_dir, progress=show)
    distributed.barrier()
    if here.is_main:
        _assemble(root, partial, chunks, split, token_vectors, teacher.token_dim)
        write_json(root / "meta.json", {
            "format": FORMAT_VERSION, "teacher": teacher.name, "teacher_fingerprint": teacher.fingerprint,
            "texts": len(store), "dim": teacher.dim, "token_dim": teacher.token_dim, "max_length": teacher.max_length,
            "pooling": teacher.pooling.value, "normalize": teacher.normalize, "token_vectors": token_vectors,
            "prompt": teacher.prompt, "vocab_dir": _vocab_dir(cache_dir, teacher).name, "texts_dir": store.root.name,
        })  # fmt: skip
        for leftover in root.glob("partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    distributed.barrier()
    return Targets.open(root)


def store_texts(texts: Sequence[str], cache_dir: Path) -> TextStore:
    """`texts` written once (by rank 0) as a text store in the cache."""
    root = write_store(texts, cache_dir).root if distributed.group().is_main else None
    return TextStore.open(distributed.broadcast(root))


def _vocab_dir(cache_dir: Path, teacher: Teacher) -> Path:
    return Path(cache_dir) / f"vocab-{teacher.fingerprint[:20]}"


def build_vocab_vectors(teacher: Teacher, cache_dir: Path, progress: bool = False) -> Path:
    """The per-token vectors depend only on the teacher, so they have a cache folder of their own."""
    root = _vocab_dir(cache_dir, teacher)
    path = root / "vocab_vectors.npy"
    if path.is_file():
        logger.info("reusing cached vocabulary vectors in %s", root)
        return root
    vectors = teacher.vocab_vectors(progress=progress)
    save_with(path, lambda tmp: _save_npy(tmp, vectors))
    return root


def _extract_chunk(
    teacher: Teacher, texts: Sequence[str], token_vectors: bool, batch_tokens: int, progress: bool, desc: str
) -> dict[str, np.ndarray]:
    sentence = np.zeros((len(texts), teacher.dim), dtype=np.float32)
    ids: list[np.ndarray] = [np.zeros(0, np.int32)] * len(texts)
    vectors: list[np.ndarray] = [np.zeros((0, teacher.token_dim), np.float16)] * len(texts)
    for index, batch in teacher.token_batches(texts, batch_tokens, progress, desc=desc):
        sentence[index] = batch.sentence_vectors.numpy()
        lengths = batch.attention_mask.sum(dim=1).tolist()
        for row, i in enumerate(index):
            ids[i] = batch.input_ids[row, : lengths[row]].numpy().astype(np.int32)
            if token_vectors:
                vectors[i] = batch.token_vectors[row, : lengths[row]].numpy().astype(np.float16)
    part = {"sentence_vectors": sentence, "lengths": np.array([len(x) for x in ids], dtype=np.int64),
            "token_ids": np.concatenate(ids)}  # fmt: skip
    if token_vectors:
        part["token_vectors"] = np.concatenate(vectors)
    return part


def _assemble(root: Path, partial: Path, chunks: range, split: np.ndarray, token_vectors: bool, token_dim: int) -> None:
    """Join the chunk files into memory-mappable arrays, one chunk at a time and one atomic file at a time."""
    paths = [partial / f"{first:09d}.npz" for first in chunks]
    lengths = np.concatenate([np.load(p)["lengths"] for p in paths] or [np.zeros(0, np.int64)])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    save_with(root / "token_offsets.npy", lambda tmp: _save_npy(tmp, offsets))
    save_with(root / "split.npy", lambda tmp: _save_npy(tmp, np.asarray(split, dtype=np.uint8)))
    dim = np.load(paths[0])["sentence_vectors"].shape[1] if paths else 0
    _join(root / "sentence_vectors.npy", paths, "sentence_vectors", np.float32, (len(lengths), dim))
    _join(root / "token_ids.npy", paths, "token_ids", np.int32, (int(offsets[-1]),))
    if token_vectors:
        _join(root / "token_vectors.npy", paths, "token_vectors", np.float16, (int(offsets[-1]), token_dim))


def _join(path: Path, parts: list[Path], key: str, dtype: type, shape: tuple[int, ...]) -> None:
    """One array of `shape` from the `key` arrays of the chunk files, written through a memory map."""
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        row = 0
        for part in parts:
            block = np.load(part)[key]
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
