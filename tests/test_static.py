from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

import students
from distill.corpus import assign_splits
from distill.errors import DistillError
from distill.targets import build_targets
from distill.teacher import Teacher
from students.static import StaticConfig, StaticStudent, context_table
from tests.conftest import SENTENCES


@pytest.fixture()
def static(tiny_teacher: Teacher, corpus: list[str], tmp_path: Path) -> StaticStudent:
    targets = build_targets(tiny_teacher, corpus, assign_splits(corpus), tmp_path / "cache")
    return StaticStudent.from_teacher(tiny_teacher, targets)


def test_encode_gives_normalised_float32_in_input_order(static: StaticStudent) -> None:
    vectors = static.encode(SENTENCES, batch_size=5)
    assert vectors.shape == (len(SENTENCES), static.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[2], static.encode([SENTENCES[2]])[0], atol=1e-6)


def test_empty_text_gives_a_zero_vector_not_a_crash(static: StaticStudent) -> None:
    assert not static.encode([""]).any()


def test_save_load_round_trip_is_exact(static: StaticStudent, tmp_path: Path) -> None:
    static.finalize()  # as the pipeline does after training: fold the training factors into one table
    path = static.save(tmp_path / "static")
    loaded = students.load(path)
    assert isinstance(loaded, StaticStudent) and loaded.config == static.config
    np.testing.assert_array_equal(loaded.encode(SENTENCES), static.encode(SENTENCES))


def test_sentence_transformers_loads_the_saved_static_student(static: StaticStudent, tmp_path: Path) -> None:
    path = static.save(tmp_path / "static")
    model = SentenceTransformer(str(path), device="cpu")
    np.testing.assert_allclose(model.encode(SENTENCES), static.encode(SENTENCES), atol=1e-5)


def test_context_table_averages_a_tokens_vectors_in_context() -> None:
    rng = np.random.default_rng(0)
    vocab_vectors = rng.normal(size=(40, 4)).astype(np.float32)
    ids = np.concatenate([np.repeat(np.arange(39), 20), [7, 7]])  # token 39 is never seen
    token_vectors = vocab_vectors[ids] * 2 + 1  # context is an affine map of the vector alone
    token_vectors[-2:] = 0.0
    table = context_table(vocab_vectors, ids, token_vectors, shrinkage=0.0)
    expected = vocab_vectors * 2 + 1
    expected[7] = expected[7] * 20 / 22
    np.testing.assert_allclose(table[:39], expected[:39], atol=1e-3)
    np.testing.assert_allclose(table[39], expected[39], atol=0.05)  # from the fitted map of vectors alone


def test_unknown_student_and_bad_init() -> None:
    with pytest.raises(DistillError, match="unknown student"):
        students.student_class("nope")
    with pytest.raises(DistillError, match="init"):
        StaticConfig(dim=8, init="random")
