"""Corpora: the packaged default, local files, folders and Hugging Face datasets, cleaned and split.

The default corpus is built from text that gensim ships in `gensim/test/test_data`: a shortened
English Wikipedia dump (parsed with gensim's own wiki utilities) and the Lee news corpus.
"""

from __future__ import annotations

import bz2
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass
from enum import IntEnum
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from distill.errors import DistillError

logger = logging.getLogger(__name__)

DEFAULT_CORPUS = "gensim"
_WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_LEE_FILES = ("lee_background.cor", "lee.cor")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WIKI_SKIP = ("=", "*", "#", "|", "!", "{", ":", ";")
_FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
DOCUMENT_SUFFIXES = (".txt", ".md")  # the files a folder of documents is read from
BEIR_CORPUS = "corpus.jsonl"  # a BEIR folder's documents (`_id`, `title`, `text`)
TEXT_CHARS = 4000  # a corpus text is cut to this many characters...
DOCUMENT_CHARS = 1_000_000  # ...and a document to be cut into passages (passages = "cut") to this many


class Split(IntEnum):
    TRAIN = 0
    VALID = 1
    TEST = 2


@dataclass
class CleanStats:
    kept: int = 0
    empty: int = 0
    duplicate: int = 0
    truncated: int = 0


def gensim_test_data() -> Path:
    try:
        import gensim
    except ImportError as e:
        raise DistillError("the default corpus needs gensim: pip install gensim") from e
    return Path(gensim.__file__).parent / "test" / "test_data"


def split_sentences(text: str, min_words: int = 4) -> list[str]:
    """Split prose into sentences; drop fragments shorter than `min_words` words."""
    sentences = (" ".join(s.split()) for s in _SENTENCE_END.split(text))
    return [s for s in sentences if len(s.split()) >= min_words]


def cut_at_sentences(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[str]:
    """`text` as passages of whole sentences, each at most `max_tokens` by `count_tokens` (a sentence longer alone
    is its own passage, which the teacher truncates); a text that fits is returned whole."""
    if len(text) <= max_tokens or count_tokens(text) <= max_tokens:  # NOTE: a token holds at least one character
        return [text]
    pieces, current = [], ""
    for sentence in (s for s in _SENTENCE_END.split(text) if s.strip()):
        joined = f"{current} {sentence}".strip()
        if current and count_tokens(joined) > max_tokens:
            pieces.append(current)
            joined = sentence.strip()
        current = joined
    return [*pieces, current] if current else pieces


def wikipedia_sentences(dump: Path) -> Iterator[str]:
    """Sentences of the article paragraphs of a Wikipedia XML dump (headings, lists and tables dropped)."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    with bz2.open(dump) as f:
        for _title, text, _page_id in extract_pages(f):
            if text.lower().startswith("#redirect"):
                continue
            for line in filter_wiki(text).splitlines():
                line = line.strip()
                if line and not line.startswith(_WIKI_SKIP):
                    yield from split_sentences(line)


def default_corpus() -> list[str]:
    """About 22,500 English sentences from the Wikipedia sample and the Lee news corpus that gensim ships."""
    data = gensim_test_data()
    texts = list(wikipedia_sentences(data / _WIKI_DUMP))
    for name in _LEE_FILES:
        for line in (data / name).read_text(encoding="latin-1").splitlines():
            texts.extend(split_sentences(line))
    return texts


def review_texts() -> list[str]:
    """The 200 short movie-review sentences gensim ships (labels stripped): text unlike the default corpus."""
    lines = (gensim_test_data() / "pang_lee_polarity.cor").read_text(encoding="cp1252", errors="replace").splitlines()
    return [line.split(" ", 1)[1].strip() for line in lines if " " in line]


def load_corpus(source: str, text_column: str = "text", limit: int | None = None, **options: Any) -> list[str]:
    """Texts from the default corpus, a file, a folder, a BEIR folder or a Hugging Face dataset, as a list."""
    return list(iter_corpus(source, text_column, limit, **options))


def iter_corpus(
    source: str, text_column: str = "text", limit: int | None = None, *, title_column: str | None = "title",
    documents: bool = False,
) -> Iterator[str]:  # fmt: skip
    """Stream the texts of `load_corpus` one at a time, never holding the corpus in memory.

    A row of a table-like file with a `title_column` gives its title and text joined, as BEIR and MTEB give a
    model a document; a BEIR folder gives the documents of its corpus.jsonl; a folder gives each line of its .txt
    files, or with `documents` each .txt or .md file whole.
    """
    if source == DEFAULT_CORPUS:
        texts: Iterable[str] = default_corpus()
    else:
        path = Path(source).expanduser()
        if path.is_dir() and (path / BEIR_CORPUS).is_file():
            texts = _dataset_texts("json", str(path / BEIR_CORPUS), text_column, title_column, data_files=True)
        elif path.is_dir():
            texts = _folder_texts(path, documents)
        elif path.suffix == ".txt":
            texts = iter_text_lines(_existing(path))
        elif path.suffix in _FILE_FORMATS:
            texts = _dataset_texts(_FILE_FORMATS[path.suffix], str(_existing(path)), text_column, title_column,
                                   data_files=True)  # fmt: skip
        elif path.exists() or source.startswith((".", "/", "~")):
            raise DistillError(
                f"corpus {source!r}: unsupported file type; use .txt, .jsonl, .csv, .parquet or a folder"
            )
        else:
            texts = _dataset_texts(source, source, text_column, title_column, data_files=False)
    return _nonempty(texts if limit is None else _take(texts, limit), source)


def check_corpus(source: str, text_column: str = "text", *, title_column: str | None = "title",
                 documents: bool = False) -> None:  # fmt: skip
    """Read a corpus up to its first text with words in it, so that a missing, binary, undecodable or empty one
    fails in one line before any work (the corpus is then read whole, as it streams into the text store)."""
    for text in iter_corpus(source, text_column, title_column=title_column, documents=documents):
        if text.strip():
            return
    raise DistillError(f"corpus {source!r} has no usable text (every line is empty)")


def _folder_texts(path: Path, documents: bool) -> Iterator[str]:
    """Each line of a folder's .txt files, or each of its .txt and .md files whole (`documents`)."""
    suffixes = DOCUMENT_SUFFIXES if documents else (".txt",)
    files = sorted(f for f in path.rglob("*") if f.suffix in suffixes and f.is_file())
    if not files:  # NOTE: here, not in a generator: a wrong folder fails before the first text is asked for
        raise DistillError(f"corpus folder {str(path)!r} has no {' or '.join(suffixes)} files")
    if documents:
        return (" ".join(iter_text_lines(file)) for file in files)
    return (line for file in files for line in iter_text_lines(file))


def join_title(title: str | None, text: str) -> str:
    """A document's title and text joined by a space, as BEIR and MTEB give a model a document."""
    return f"{title} {text}".strip() if title else text.strip()


def _nonempty(texts: Iterable[str], source: str) -> Iterator[str]:
    empty = True
    for text in texts:
        empty = False
        yield text
    if empty:
        raise DistillError(f"corpus {source!r} is empty; give it at least a few hundred lines of text")


def iter_text_lines(path: Path) -> Iterator[str]:
    """Lines of a UTF-8 text file, read one at a time; a binary or undecodable file is the user's error."""
    with _existing(path).open("rb") as f:
        if b"\x00" in f.read(8192):
            raise DistillError(f"{path} looks like a binary file; give a UTF-8 text file with one text per line")
        f.seek(0)
        start = 0
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DistillError(
                    f"{path} is not UTF-8 text (line {number}, byte {start + e.start}); re-encode it as UTF-8"
                ) from e
            start += len(raw)
            # NOTE: splitlines on each b"\n"-line also splits at \r, \x85, \u2028..., as str.splitlines on the file did
            yield from line.splitlines()


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise DistillError(f"corpus file {str(path)!r} does not exist")
    return path


def _take(texts: Iterable[str], limit: int) -> Iterator[str]:
    for i, text in enumerate(texts):
        if i >= limit:
            return
        yield text


def _dataset_texts(builder: str, source: str, column: str, title_column: str | None, *,
                   data_files: bool) -> Iterator[str]:  # fmt: skip
    """Texts of one column (after the row's title, where `title_column` holds one), streamed through the
    `datasets` library (no Arrow cache is written)."""
    import datasets

    files = {"data_files": source} if data_files else {}
    try:
        rows = iter(datasets.load_dataset(builder, split="train", streaming=True, **files))
        first = next(rows, None)
    except Exception as e:  # NOTE: datasets raises many unrelated types for "not found / not readable"
        raise DistillError(f"could not read corpus {source!r}: {str(e).splitlines()[0]}") from e
    if first is None:
        return
    if column not in first:
        raise DistillError(f"corpus {source!r} has no column {column!r} (columns: {', '.join(first)}); set text-column")
    try:
        for row in chain([first], rows):
            value = row[column]
            if isinstance(value, str):
                title = row.get(title_column) if title_column else None
                yield join_title(title if isinstance(title, str) else None, value)
    except Exception as e:  # NOTE: streamed, a malformed row deep in the file only shows up here
        raise DistillError(f"could not read corpus {source!r}: {str(e).splitlines()[0]}") from e


def clean(texts: Iterable[str], max_chars: int = TEXT_CHARS) -> tuple[list[str], CleanStats]:
    """Collapse whitespace, drop empty and duplicate texts, truncate very long ones."""
    stats, seen, kept = CleanStats(), set(), []
    for text in normalise(texts, stats, max_chars):
        if text in seen:
            stats.duplicate += 1
            continue
        seen.add(text)
        kept.append(text)
    stats.kept = len(kept)
    log_clean_stats(stats, max_chars)
    return kept, stats


def normalise(texts: Iterable[str], stats: CleanStats, max_chars: int) -> Iterator[str]:
    """Each text with whitespace collapsed and cut to `max_chars`; empty ones dropped (counted in `stats`)."""
    for text in texts:
        text = " ".join(text.split())
        if not text:
            stats.empty += 1
            continue
        if len(text) > max_chars:
            text = text[:max_chars]
            stats.truncated += 1
        yield text


def log_clean_stats(stats: CleanStats, max_chars: int) -> None:
    logger.info(
        "corpus: kept %d texts; skipped %d empty and %d duplicate; truncated %d longer than %d characters",
        stats.kept,
        stats.empty,
        stats.duplicate,
        stats.truncated,
        max_chars,
    )


def assign_splits(texts: Iterable[str], valid: float = 0.1, test: float = 0.1, seed: int = 0) -> np.ndarray:
    """(n,) uint8 of `Split` values, from a hash of each text: stable when the corpus grows or is reordered."""
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise DistillError(f"valid ({valid}) and test ({test}) fractions must be in [0, 1) and sum below 1")
    fraction = text_fractions(texts, seed)
    split = np.full(len(fraction), Split.TRAIN, dtype=np.uint8)
    split[fraction >= 1 - valid - test] = Split.VALID
    split[fraction >= 1 - test] = Split.TEST
    return split


def text_fractions(texts: Iterable[str], seed: int = 0) -> np.ndarray:
    """(n,) float64 in [0, 1), one a text, from a hash of the text and `seed`: an order no corpus's layout sets."""
    buckets = np.fromiter(  # NOTE: fromiter, not a list of n Python ints: `texts` may be a 10-million-line TextStore
        (int.from_bytes(hashlib.blake2b(f"{seed}:{t}".encode(), digest_size=8).digest(), "little") for t in texts),
        dtype=np.uint64,
        count=len(texts) if isinstance(texts, Sized) else -1,
    )
    return buckets.astype(np.float64) / float(2**64)


def fingerprint(texts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\n")
    return digest.hexdigest()
