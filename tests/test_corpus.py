import json
from pathlib import Path

import numpy as np
import pytest

from distill.data.corpus import Split, assign_splits, clean, default_corpus, load_corpus, review_texts, split_sentences
from distill.errors import DistillError


def test_default_corpus_is_the_packaged_wikipedia_and_lee_text() -> None:
    texts, _ = clean(default_corpus())
    assert 20_000 < len(texts) < 26_000
    assert all(len(t.split()) >= 4 for t in texts[:1000])


def test_clean_counts_what_it_skips() -> None:
    texts, stats = clean(["a  b", "", "   ", "a b", "x" * 50], max_chars=10)
    assert texts == ["a b", "x" * 10]
    assert (stats.empty, stats.duplicate, stats.truncated) == (2, 1, 1)


def test_splits_are_deterministic_and_stable_under_reordering() -> None:
    texts = [f"sentence number {i}" for i in range(5000)]
    split = assign_splits(texts)
    again = assign_splits(list(reversed(texts)))
    np.testing.assert_array_equal(split, again[::-1])
    shares = np.bincount(split, minlength=3) / len(texts)
    assert abs(shares[Split.VALID] - 0.1) < 0.02 and abs(shares[Split.TEST] - 0.1) < 0.02


def test_sentence_splitter() -> None:
    assert split_sentences("The cat sat down. Then it slept for hours! Ok.") == [
        "The cat sat down.",
        "Then it slept for hours!",
    ]


def test_file_formats(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first line here\nsecond line here\n")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"body": t}) for t in ["one text", "two text"]))
    (tmp_path / "c.csv").write_text("id,text\n1,hello there\n2,general kenobi\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x.txt").write_text("inside a folder\n")
    assert load_corpus(str(tmp_path / "a.txt")) == ["first line here", "second line here"]
    assert load_corpus(str(tmp_path / "b.jsonl"), text_column="body") == ["one text", "two text"]
    assert load_corpus(str(tmp_path / "c.csv")) == ["hello there", "general kenobi"]
    assert load_corpus(str(folder)) == ["inside a folder"]
    assert load_corpus(str(tmp_path / "a.txt"), limit=1) == ["first line here"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "empty"),
        ("binary.txt", b"\x00\x01\x02\xff" * 100, "binary"),
        ("latin.txt", "café\n".encode("latin-1"), "UTF-8"),
        ("data.xlsx", b"whatever", "unsupported"),
    ],
)
def test_bad_corpora_are_user_errors(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DistillError, match=message):
        load_corpus(str(tmp_path / name))


def test_missing_column_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "x"}))
    with pytest.raises(DistillError, match="no column"):
        load_corpus(str(tmp_path / "b.jsonl"))
    with pytest.raises(DistillError, match="does not exist"):
        load_corpus(str(tmp_path / "nope.txt"))


def test_review_texts_are_the_200_labelled_sentences_without_labels() -> None:
    reviews = review_texts()
    assert len(reviews) == 200 and not any(r.startswith("__label__") for r in reviews)
