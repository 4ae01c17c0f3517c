from pathlib import Path

import numpy as np
import pytest
import torch

import students
from distill.corpus import assign_splits
from distill.errors import DistillError
from distill.targets import Targets, build_targets
from distill.teacher import Teacher
from students.tokengen import TokenGenConfig, TokenGenerator, TokenGenStudent, fit_generator, read_words
from tests.conftest import SENTENCES

QUICK = {"generator_epochs": 2, "extra_words": 50}


@pytest.fixture(scope="module")
def targets(tiny_teacher: Teacher, corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> Targets:
    return build_targets(tiny_teacher, corpus, assign_splits(corpus), tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tokengen(tiny_teacher: Teacher, targets: Targets) -> TokenGenStudent:
    return TokenGenStudent.from_teacher(tiny_teacher, targets, **QUICK)


def test_features_are_stable_and_tell_word_starts_from_continuations() -> None:
    generator = TokenGenerator(TokenGenConfig(dim=8, buckets=1000))
    a, b = generator.featurize(["play", "##play"]), generator.featurize(["play", "##play"])
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[0], a[1])
    assert generator.featurize(["x"]).shape[0] == 1


def test_generator_learns_a_mapping_that_spelling_decides() -> None:
    """Targets that are a fixed function of a word's letters: held-out words are predicted far better than by
    the mean vector (cosine about 0.42 here) or by the untrained network."""
    rng = np.random.default_rng(0)
    letters = rng.normal(size=(26, 16)).astype(np.float32)
    words = sorted({"".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(3, 8))) for _ in range(3000)})
    vectors = torch.from_numpy(np.stack([letters[[ord(c) - 97 for c in w]].sum(0) for w in words]))
    held_out = np.arange(len(words)) % 10 == 0
    generator = TokenGenerator(TokenGenConfig(dim=16, buckets=2048, width=32, hidden=64, generator_epochs=30))
    untrained = torch.nn.functional.cosine_similarity(generator(generator.featurize(words)), vectors).mean()
    metrics = fit_generator(generator, words, vectors, held_out, np.ones(len(words), bool))
    assert metrics["generator_heldout_vocab_cosine"] > 0.65 > untrained


def test_student_builds_reports_and_round_trips(tokengen: TokenGenStudent, tmp_path: Path) -> None:
    assert {"generator_heldout_vocab_cosine", "generator_heldout_word_cosine"} <= set(tokengen.metrics)
    table = tokengen.config.vocab_size * tokengen.dim
    assert sum(p.numel() for p in tokengen.generator.parameters()) < table
    path = tokengen.save(tmp_path / "tokengen")
    loaded = students.load(path)
    assert isinstance(loaded, TokenGenStudent) and loaded.config == tokengen.config
    np.testing.assert_array_equal(loaded.encode(SENTENCES), tokengen.encode(SENTENCES))
    np.testing.assert_array_equal(loaded.word_vectors(["zyzzyva"]), tokengen.word_vectors(["zyzzyva"]))


def test_any_word_gets_a_unit_vector(tokengen: TokenGenStudent) -> None:
    vectors = tokengen.word_vectors(["cat", "Unfathomableness", "zyzzyva"])
    assert vectors.shape == (3, tokengen.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(DistillError, match="no words"):
        tokengen.word_vectors([])


def test_batched_training_forward_matches_the_cached_table(tokengen: TokenGenStudent) -> None:
    batch = tokengen.tokenize(SENTENCES)
    tokengen.train()
    with torch.no_grad():
        training = tokengen(batch["input_ids"], batch["attention_mask"])
    tokengen.eval()
    torch.testing.assert_close(training, tokengen(batch["input_ids"], batch["attention_mask"]), atol=1e-5, rtol=0)


def test_word_lists_that_are_empty_or_missing_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(DistillError, match="is empty"):
        read_words(str(tmp_path / "empty.txt"))
    with pytest.raises(DistillError, match="does not exist"):
        read_words(str(tmp_path / "missing.txt"))
    (tmp_path / "words.txt").write_text("alpha\nbeta\n")
    assert read_words(str(tmp_path / "words.txt")) == ["alpha", "beta"]


def test_the_reference_uses_the_teacher_table(tiny_teacher: Teacher, targets: Targets) -> None:
    reference = TokenGenStudent.from_teacher(tiny_teacher, targets, source="teacher")
    np.testing.assert_array_equal(reference.table().numpy(), np.asarray(targets.vocab_vectors))
    assert reference.metrics == {}
