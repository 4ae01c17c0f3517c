"""Texts on disk, read back by index: a corpus of ten million lines never has to be one Python list.

A store is a folder `texts-<fingerprint[:20]>/` in the cache:

- `texts.txt`: every text in UTF-8, each followed by "\\n" (a text may contain newlines itself: the offsets,
  not the lines, say where a text ends);
- `offsets.npy`: (n + 1,) int64 byte offset where each text starts, then the size of `texts.txt`;
- `meta.json`, written last: format, count, bytes and fingerprint. A folder without it is never trusted.

NOTE: because each text is followed by "\\n", the sha256 of `texts.txt` is exactly
`distill.data.corpus.fingerprint(texts)`: cache keys built from the corpus stay as they were, and
`sha256sum texts.txt` checks a store by hand.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import operator
import os
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import compress, pairwise
from pathlib import Path
from typing import overload

import numpy as np
from tqdm.auto import tqdm

from distill.data.corpus import TEXT_CHARS, CleanStats, fingerprint, log_clean_stats, normalise
from distill.errors import DistillError
from distill.io import atomic_dir, read_json, write_json

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
TEXTS, OFFSETS, META = "texts.txt", "offsets.npy", "meta.json"
_READ_BYTES = 1 << 20  # how much of texts.txt one step of iteration reads
_HASH_BLOCK = 1 << 16  # how many sorted hashes one step of the duplicate search compares


class TextStore(Sequence[str]):
    """Texts in one UTF-8 file with an int64 offsets array: random access without holding them in memory."""

    def __init__(self, root: Path, fingerprint: str, offsets: np.ndarray) -> None:
        """Use `TextStore.open`, which checks the folder first."""
        self.root = root
        self.fingerprint = fingerprint
        self._offsets = offsets  # (n + 1,) int64, memory-mapped
        self._data: mmap.mmap | bytes | None = None  # texts.txt, mapped on first read

    @classmethod
    def open(cls, root: Path) -> TextStore:
        """The store in `root`; a folder without meta.json, or whose files disagree with it, is refused."""
        root = Path(root)
        if not (root / META).is_file():
            raise DistillError(f"{root} is not a complete text store (no {META}); delete it and run again")
        try:
            meta = read_json(root / META)
            offsets = np.asarray(np.load(root / OFFSETS, mmap_mode="r"))
            intact = (
                meta["format"] == FORMAT_VERSION
                and offsets.shape == (meta["count"] + 1,)
                and int(offsets[-1]) == meta["bytes"] == (root / TEXTS).stat().st_size
            )
        except (OSError, ValueError, KeyError) as e:
            raise DistillError(f"text store {root} is unreadable ({e}); delete it and run again") from e
        if not intact:
            raise DistillError(f"text store {root} is damaged (its files disagree with {META}); delete it, run again")
        return cls(root, meta["fingerprint"], offsets)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        i = operator.index(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"text {i} is out of range for a store of {len(self)}")
        return self.take([i])[0]

    def take(self, index: Sequence[int] | np.ndarray) -> list[str]:
        """The texts at these positions (negative ones count from the end), in this order."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)  # (k,)
        n = len(self)
        if index.size and not (-n <= index.min() and index.max() < n):
            raise IndexError(f"text positions must lie in [-{n}, {n}) for a store of {n}")
        index = np.where(index < 0, index + n, index)
        starts, ends = self._offsets[index].tolist(), (self._offsets[index + 1] - 1).tolist()
        data = self._mapped()
        return [data[start:end].decode("utf-8") for start, end in zip(starts, ends, strict=True)]

    def __iter__(self) -> Iterator[str]:
        """Every text in order, read from the file about a megabyte at a time."""
        offsets, n, start = self._offsets, len(self), 0
        with (self.root / TEXTS).open("rb") as f:
            while start < n:
                fits = int(np.searchsorted(offsets, offsets[start] + _READ_BYTES, side="right")) - 1
                end = max(start + 1, fits)  # NOTE: a text longer than a block is read alone
                block = f.read(int(offsets[end] - offsets[start]))
                bounds = (offsets[start : end + 1] - offsets[start]).tolist()
                for left, right in pairwise(bounds):
                    yield block[left : right - 1].decode("utf-8")
                start = end

    def byte_lengths(self) -> np.ndarray:
        """(n,) int64 UTF-8 length in bytes of each text, from the offsets alone."""
        return np.diff(self._offsets) - 1

    def __reduce__(self) -> tuple:
        # NOTE: a pickle (a DataLoader worker's copy) holds only the root; the copy reopens the folder
        # itself and maps texts.txt on its first read, never the parent's memory map.
        return (TextStore.open, (self.root,))

    def __repr__(self) -> str:
        return f"TextStore({str(self.root)!r}, {len(self)} texts)"

    def _mapped(self) -> mmap.mmap | bytes:
        if self._data is None:
            with (self.root / TEXTS).open("rb") as f:
                # NOTE: mmap refuses an empty file, and a store of no texts (or only empty ones) may be one
                empty = os.fstat(f.fileno()).st_size == 0
                self._data = b"" if empty else mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._data


def write_store(texts: Iterable[str], cache_dir: Path, progress: bool = False) -> TextStore:
    """Texts exactly as given into cache_dir/texts-<fingerprint[:20]>/, reusing a complete folder already there.

    Any characters, newlines included; order and duplicates kept; written atomically.
    """
    cache_dir = Path(cache_dir)
    known = texts.fingerprint if isinstance(texts, TextStore) else None
    if known is None and isinstance(texts, (list, tuple)):
        known = fingerprint(texts)  # NOTE: cheap next to writing, and a rerun then writes nothing
    if known is not None and (store := _reusable(cache_dir / f"texts-{known[:20]}", known)) is not None:
        return store
    lines = (text.encode() + b"\n" for text in _bar(texts, "storing texts", progress))
    with _staging(cache_dir) as staging:
        return _publish(staging, cache_dir, *_write_lines(lines, staging))


def ingest(
    texts: Iterable[str], cache_dir: Path, max_chars: int = TEXT_CHARS, progress: bool = False
) -> tuple[TextStore, CleanStats]:
    """Clean a streamed corpus into a TextStore: the result of `distill.data.corpus.clean`, never held in memory.

    Whitespace is collapsed, empty texts dropped, long ones cut to `max_chars` and duplicates dropped
    (the first kept), in two passes over a temporary file: memory is about 17 bytes per text, whatever
    the texts' length.
    """
    cache_dir, stats = Path(cache_dir), CleanStats()
    with _staging(cache_dir) as staging:
        normalised = staging / "normalised.txt"
        hashes = _write_normalised(_bar(texts, "cleaning corpus", progress), normalised, stats, max_chars)
        first = _first_occurrences(hashes)
        del hashes  # NOTE: 8 bytes a text; the second pass needs only `first`, 1 byte a text
        stats.kept = int(np.count_nonzero(first))
        stats.duplicate = len(first) - stats.kept
        log_clean_stats(stats, max_chars)
        with normalised.open("rb") as lines:
            kept = compress(lines, _as_bools(first))
            written = _write_lines(_bar(kept, "storing texts", progress, total=stats.kept), staging)
        return _publish(staging, cache_dir, *written), stats


def _bar(items: Iterable, desc: str, progress: bool, total: int | None = None) -> Iterable:
    return tqdm(items, desc=desc, total=total, unit="text", disable=not progress)


def _write_normalised(texts: Iterable[str], path: Path, stats: CleanStats, max_chars: int) -> np.ndarray:
    """Write each normalised text as one line of `path`; return the (n,) uint64 hash of each."""
    hashes = bytearray()  # NOTE: 8 bytes a text; a set of the texts would cost about 100
    with path.open("wb") as f:
        for text in normalise(texts, stats, max_chars):
            line = text.encode() + b"\n"  # NOTE: no normalised text holds a newline: split() took them all
            f.write(line)
            hashes += hashlib.blake2b(line, digest_size=8).digest()
    return np.frombuffer(hashes, dtype=np.uint64)


def _first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """(n,) bool, True where a hash is seen for the first time.

    NOTE: two different texts share a 64-bit hash with odds about n² / 2^65: 3e-6 for ten million
    texts, and then one of them is dropped as a duplicate. blake2b (not Python's salted `hash`) makes
    even that rare loss the same on every run, so the fingerprint and the caches keyed by it stay stable.
    """
    order = np.argsort(hashes, kind="stable")  # (n,) int64; stable: each run of equal hashes starts at its first
    first = np.zeros(len(hashes), dtype=bool)
    for start in range(0, len(order), _HASH_BLOCK):  # NOTE: in blocks, so no second (n,) array of sorted hashes
        block = order[max(start - 1, 0) : start + _HASH_BLOCK]
        sorted_hashes = hashes[block]
        new = np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]]
        if start:
            block, new = block[1:], new[1:]
        first[block[new]] = True
    return first


def _as_bools(mask: np.ndarray) -> Iterator[bool]:
    for start in range(0, len(mask), _HASH_BLOCK):
        yield from mask[start : start + _HASH_BLOCK].tolist()


def _write_lines(lines: Iterable[bytes], folder: Path) -> tuple[str, int]:
    """Write `lines` (each text's UTF-8 and "\\n") as texts.txt and offsets.npy; return the fingerprint and count."""
    digest, offsets = hashlib.sha256(), array("q", [0])  # NOTE: 8 bytes a text, grown in place
    with (folder / TEXTS).open("wb") as f:
        for line in lines:
            f.write(line)
            digest.update(line)
            offsets.append(offsets[-1] + len(line))
    np.save(folder / OFFSETS, np.frombuffer(offsets, dtype=np.int64))
    return digest.hexdigest(), len(offsets) - 1


def _publish(staging: Path, cache_dir: Path, fingerprint: str, count: int) -> TextStore:
    """Move the written files into texts-<fingerprint[:20]>/, unless a complete store of them is there already."""
    root = cache_dir / f"texts-{fingerprint[:20]}"
    if (store := _reusable(root, fingerprint)) is not None:
        return store
    with atomic_dir(root) as tmp:
        for name in (TEXTS, OFFSETS):
            os.replace(staging / name, tmp / name)
        size = (tmp / TEXTS).stat().st_size
        meta = {"format": FORMAT_VERSION, "count": count, "bytes": size, "fingerprint": fingerprint}
        write_json(tmp / META, meta)
    logger.info("text store: %d texts, %d bytes in %s", count, size, root)
    return TextStore.open(root)


def _reusable(root: Path, fingerprint: str) -> TextStore | None:
    if not root.is_dir():
        return None
    try:
        store = TextStore.open(root)
    except DistillError:
        return None  # NOTE: an incomplete or damaged folder is rewritten, never trusted
    if store.fingerprint != fingerprint:
        return None
    logger.info("text store: reusing %s (%d texts)", root, len(store))
    return store


@contextmanager
def _staging(cache_dir: Path) -> Iterator[Path]:
    """A temporary folder in the cache (not /tmp: a corpus larger than memory may be larger than /tmp too)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".texts-", suffix=".tmp", dir=cache_dir) as tmp:
        yield Path(tmp)
