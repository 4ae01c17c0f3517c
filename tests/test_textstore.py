"""The text store: texts on disk read back exactly, cleaned as `clean` cleans, without holding the corpus in memory."""

import hashlib
import json
import logging
import pickle
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from distill.data import textstore
from distill.data.corpus import assign_splits, clean, fingerprint, iter_corpus, load_corpus
from distill.data.textstore import TextStore, ingest, write_store
from distill.errors import DistillError

TEXTS = ["plain", "", "naïve café ☕ 日本語 🙂", "two\nlines", "\n", "  spaced  ", "plain", "x" * 3000, "\r\n\u2028"]


def test_texts_round_trip_exactly(tmp_path: Path) -> None:
    store = write_store(iter(TEXTS), tmp_path)
    assert len(store) == len(TEXTS)
    assert list(store) == TEXTS
    assert [store[i] for i in range(len(TEXTS))] == TEXTS
    assert store.byte_lengths().tolist() == [len(t.encode()) for t in TEXTS]
    assert store.byte_lengths().dtype == np.int64


def test_indexing_behaves_like_a_list(tmp_path: Path) -> None:
    store = write_store(TEXTS, tmp_path)
    assert store[-1] == TEXTS[-1] and store[-len(TEXTS)] == TEXTS[0]
    for key in (slice(1, 4), slice(None, None, -2), slice(5, 1), slice(-3, None), slice(None)):
        assert store[key] == TEXTS[key]
    assert store.take([3, 0, -1, 3]) == [TEXTS[3], TEXTS[0], TEXTS[-1], TEXTS[3]]
    assert store.take(np.array([2, 6])) == [TEXTS[2], TEXTS[6]]
    assert store.take([]) == []
    for bad in (len(TEXTS), -len(TEXTS) - 1):
        with pytest.raises(IndexError):
            store[bad]
        with pytest.raises(IndexError):
            store.take([0, bad])


def test_iteration_reads_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textstore, "_READ_BYTES", 7)  # texts shorter than, equal to and longer than a block
    texts = [f"text {i}" * (i % 4) for i in range(50)]
    store = write_store(texts, tmp_path)
    assert list(store) == texts
    assert "text 3text 3text 3" in store and store.index(texts[9]) == 9


def test_empty_stores_open_and_read(tmp_path: Path) -> None:
    empty = TextStore.open(write_store([], tmp_path).root)
    assert len(empty) == 0 and list(empty) == [] and empty[:] == [] and empty.take([]) == []
    assert empty.byte_lengths().shape == (0,)
    with pytest.raises(IndexError):
        empty[0]
    only_empty_texts = write_store(["", ""], tmp_path)
    assert list(only_empty_texts) == ["", ""] and only_empty_texts[1] == ""


def test_fingerprint_is_the_corpus_fingerprint(tmp_path: Path) -> None:
    store = write_store(iter(TEXTS), tmp_path)
    assert store.fingerprint == fingerprint(TEXTS)
    assert store.root == tmp_path / f"texts-{fingerprint(TEXTS)[:20]}"
    assert hashlib.sha256((store.root / "texts.txt").read_bytes()).hexdigest() == store.fingerprint
    assert write_store(TEXTS[:-1], tmp_path).fingerprint != store.fingerprint


def test_pickled_store_reads_the_same(tmp_path: Path) -> None:
    store = write_store(TEXTS, tmp_path)
    store[0]  # map the file first: the copy must not carry the map
    data = pickle.dumps(store)
    assert len(data) < 500
    copy = pickle.loads(data)
    assert copy.root == store.root and copy.fingerprint == store.fingerprint
    assert list(copy) == TEXTS and copy[3] == TEXTS[3]


def test_complete_store_is_reused(tmp_path: Path) -> None:
    first = write_store(TEXTS, tmp_path)
    (first.root / "marker").write_text("still here")  # a rewrite would replace the folder
    for texts in (TEXTS, iter(TEXTS), first):
        again = write_store(texts, tmp_path)
        assert again.root == first.root and list(again) == TEXTS
    assert (first.root / "marker").exists()
    assert [p.name for p in tmp_path.iterdir()] == [first.root.name]  # no staging folder left behind


def test_folder_without_meta_is_refused_and_rewritten(tmp_path: Path) -> None:
    root = write_store(TEXTS, tmp_path).root
    (root / "meta.json").unlink()
    with pytest.raises(DistillError, match=r"no meta\.json"):
        TextStore.open(root)
    assert list(write_store(iter(TEXTS), tmp_path)) == TEXTS
    meta = json.loads((root / "meta.json").read_text())
    (root / "meta.json").write_text(json.dumps({**meta, "count": meta["count"] + 1}))
    with pytest.raises(DistillError, match="damaged"):
        TextStore.open(root)


MESSY = [
    "  Hello   world ",
    "",
    "\t\n",
    "Hello world",
    "hello world",
    "a\u00a0b\u2028c",
    "a b c",
    "y" * 30 + "tail one",
    "y" * 30 + "tail two",
    "line\r\nbreak",
    "line break",
    "日本語  テキスト",
]


@pytest.mark.parametrize("texts", [MESSY, MESSY * 3, [], ["", " "]])
def test_ingest_cleans_as_clean_does(tmp_path: Path, caplog: pytest.LogCaptureFixture, texts: list[str]) -> None:
    with caplog.at_level(logging.INFO, logger="distill.data.corpus"):
        expected, expected_stats = clean(texts, max_chars=30)
        store, stats = ingest(iter(texts), tmp_path, max_chars=30)
    assert list(store) == expected
    assert stats == expected_stats
    assert store.fingerprint == fingerprint(expected)
    assert caplog.messages[0] == caplog.messages[1]


def test_ingest_memory_does_not_grow_with_a_list_of_texts(tmp_path: Path) -> None:
    n = 200_000

    def lines() -> Iterator[str]:
        for i in range(n):
            yield f"  generated sentence number {i % 150_000} with a few more words "

    tracemalloc.start()
    try:
        store, stats = ingest(lines(), tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (len(store), stats.duplicate) == (150_000, 50_000)
    assert store[-1] == f"generated sentence number {149_999} with a few more words"
    assert peak < 40 * n + 2_000_000, f"peak {peak / n:.1f} bytes a text"  # a list and set of them: over 100


def test_splits_of_a_store_equal_splits_of_the_list(tmp_path: Path) -> None:
    texts = [f"sentence number {i}" for i in range(3000)]
    store = write_store(texts, tmp_path)
    np.testing.assert_array_equal(assign_splits(store), assign_splits(texts))
    np.testing.assert_array_equal(assign_splits(iter(texts), 0.2, 0.3, seed=7), assign_splits(texts, 0.2, 0.3, seed=7))


def test_iter_corpus_streams_what_load_corpus_loads(tmp_path: Path) -> None:
    data = "first line\r\nsecond\rthird\u2028fourth\x85fifth\n\nlast without newline".encode()
    (tmp_path / "a.txt").write_bytes(data)
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"body": t}) for t in ["one text", "two\ntext"]))
    (tmp_path / "c.csv").write_text("id,text\n1,hello there\n2,general kenobi\n")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "x.txt").write_text("inside a folder\nsecond\n")
    (folder / "sub" / "y.txt").write_text("nested\n")
    sources = [("a.txt", "text"), ("b.jsonl", "body"), ("c.csv", "text"), ("folder", "text")]
    for name, column in sources:
        streamed = iter_corpus(str(tmp_path / name), text_column=column)
        assert not isinstance(streamed, list)
        assert list(streamed) == load_corpus(str(tmp_path / name), text_column=column)
    assert load_corpus(str(tmp_path / "a.txt")) == data.decode().splitlines()
    assert load_corpus(str(tmp_path / "b.jsonl"), text_column="body") == ["one text", "two\ntext"]
    assert load_corpus(str(folder)) == ["nested", "inside a folder", "second"]  # files in sorted path order
    assert list(iter_corpus(str(tmp_path / "a.txt"), limit=2)) == ["first line", "second"]


def test_not_utf8_error_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes("fine\nalso fine\ncafé\n".encode("latin-1"))
    with pytest.raises(DistillError, match=r"not UTF-8 text \(line 3, byte 18\)"):
        list(iter_corpus(str(tmp_path / "latin.txt")))


def test_iter_corpus_refuses_missing_and_empty_corpora(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match="does not exist"):
        iter_corpus(str(tmp_path / "nope.txt"))  # before the first text is asked for
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DistillError, match="empty"):
        list(iter_corpus(str(tmp_path / "empty.txt")))
