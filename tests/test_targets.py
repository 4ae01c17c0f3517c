import logging
from pathlib import Path

import numpy as np
import pytest

import distill.data.targets as targets_module
from distill.data.corpus import assign_splits
from distill.data.targets import build_targets
from distill.teacher.model import Teacher


def test_targets_match_the_teacher_and_are_reused(
    tiny_teacher: Teacher, corpus: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    split = assign_splits(corpus)
    built = build_targets(tiny_teacher, corpus, split, tmp_path)
    np.testing.assert_allclose(built.sentence_vectors, tiny_teacher.sentence_vectors(corpus), atol=1e-5)
    ids, vectors = built.tokens_of(3)
    assert ids[0] == tiny_teacher.tokenizer.cls_token_id and ids[-1] == tiny_teacher.tokenizer.sep_token_id
    assert vectors.shape == (len(ids), tiny_teacher.dim) and vectors.dtype == np.float16
    assert isinstance(built.sentence_vectors, np.memmap)
    with caplog.at_level(logging.INFO):
        again = build_targets(tiny_teacher, corpus, split, tmp_path)
    assert "reusing cached targets" in caplog.text
    assert again.root == built.root and list(again.texts) == corpus


def test_interrupted_extraction_resumes_from_complete_chunks(
    tiny_teacher: Teacher, corpus: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(targets_module, "CHUNK_TEXTS", 40)
    real = targets_module._extract_chunk
    calls = []

    def dies_on_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(targets_module, "_extract_chunk", dies_on_third_chunk)
    split = assign_splits(corpus)
    with pytest.raises(KeyboardInterrupt):
        build_targets(tiny_teacher, corpus, split, tmp_path)
    (root,) = tmp_path.glob("targets-*")
    assert not (root / "meta.json").exists()
    leftover = root / "partial-40" / ".000000080.npz.half.tmp"
    leftover.write_bytes(b"half-written")  # a temp file from a killed write is never trusted
    calls.clear()
    monkeypatch.setattr(targets_module, "_extract_chunk", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    built = build_targets(tiny_teacher, corpus, split, tmp_path)
    assert len(calls) == -(-len(corpus) // 40) - 2
    np.testing.assert_allclose(built.sentence_vectors, tiny_teacher.sentence_vectors(corpus), atol=1e-5)
    assert not list(root.glob("partial*"))
