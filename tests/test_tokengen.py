from pathlib import Path

import numpy as np
import pytest
import torch

import students
from distill.data.corpus import assign_splits
from distill.data.targets import Targets, build_targets
from distill.errors import DistillError
from distill.teacher.model import Teacher
from distill.teacher.tokens import Speller, Spelling
from distill.training.trainer import TrainConfig, Trainer
from students.tokengen import TokenGenConfig, TokenGenerator, TokenGenStudent, fit_generator, read_words
from tests.conftest import SENTENCES
from tests.families import tiny_teacher as family_teacher
from tests.families import train_tokenizer

QUICK = {"generator_epochs": 2, "extra_words": 50}


@pytest.fixture(scope="module")
def targets(tiny_teacher: Teacher, corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> Targets:
    return build_targets(tiny_teacher, corpus, assign_splits(corpus), tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tokengen(tiny_teacher: Teacher, targets: Targets) -> TokenGenStudent:
    return TokenGenStudent.from_teacher(tiny_teacher, targets, **QUICK)


@pytest.mark.parametrize("encoder", ["ngram", "chars"])
def test_features_are_stable_and_tell_word_starts_from_continuations(encoder: str) -> None:
    generator = TokenGenerator(TokenGenConfig(dim=8, buckets=1000, encoder=encoder))
    spelled = [Spelling("play", True), Spelling("play", False)]
    a, b = generator.featurize(spelled), generator.featurize(spelled)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[0], a[1])
    assert generator.featurize([Spelling("x", True)]).shape[0] == 1


@pytest.mark.parametrize("encoder", ["ngram", "chars"])
def test_a_word_gets_the_same_features_whatever_the_tokenizer_kind(encoder: str) -> None:
    """'the' / 'Ġthe' / '▁the' and '##ing' / 'ing' / 'ing' are the same pieces of text in three spellings."""
    generator = TokenGenerator(TokenGenConfig(dim=8, buckets=1000, encoder=encoder))
    forms = {
        "wordpiece": ["the", "##ing", "café"],
        "bpe": ["Ġthe", "ing", "ĠcafÃ©"],
        "unigram": ["▁the", "ing", "▁café"],
    }
    features = []
    for kind, tokens in forms.items():
        speller = Speller(train_tokenizer(kind, "roberta", SENTENCES).backend_tokenizer)
        features.append(generator.featurize([speller.spell(t) for t in tokens]))
    torch.testing.assert_close(features[0], features[1])
    torch.testing.assert_close(features[0], features[2])
    assert not torch.equal(features[0][0], features[0][1])


def test_the_generator_grows_with_the_teacher() -> None:
    assert [TokenGenConfig(dim=d).hidden for d in (32, 384, 768, 1024)] == [64, 256, 512, 704]
    assert TokenGenConfig(dim=768, hidden=128).hidden == 128
    with pytest.raises(DistillError, match="positive"):
        TokenGenConfig(dim=768, hidden=-1)


def test_generator_learns_a_mapping_that_spelling_decides() -> None:
    """Targets that are a fixed function of a word's letters: held-out words are predicted far better than by
    the mean vector (cosine about 0.42 here) or by the untrained network."""
    rng = np.random.default_rng(0)
    letters = rng.normal(size=(26, 16)).astype(np.float32)
    words = sorted({"".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(3, 8))) for _ in range(3000)})
    vectors = torch.from_numpy(np.stack([letters[[ord(c) - 97 for c in w]].sum(0) for w in words]))
    held_out = np.arange(len(words)) % 10 == 0
    spelled = [Spelling(w, True) for w in words]
    generator = TokenGenerator(TokenGenConfig(dim=16, buckets=2048, width=32, hidden=64, generator_epochs=30))
    untrained = torch.nn.functional.cosine_similarity(generator(generator.featurize(spelled)), vectors).mean()
    metrics = fit_generator(generator, spelled, vectors, held_out, np.ones(len(words), bool))
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


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta"])
def test_every_tokenizer_kind_builds_trains_and_names_unseen_words(
    family: str, corpus: list[str], tmp_path: Path
) -> None:
    teacher = family_teacher(family, corpus)
    targets = build_targets(teacher, corpus, assign_splits(corpus), tmp_path / "cache")
    student = TokenGenStudent.from_teacher(teacher, targets, **QUICK)
    learnable = set(student.learnable_ids())
    assert not learnable & set(teacher.tokenizer.all_special_ids)
    assert len(learnable) == len(teacher.tokenizer) - len(teacher.tokenizer.all_special_ids)
    assert student.metrics["generator_train_cosine"] > 0.5
    result = Trainer(student, targets, TrainConfig(epochs=1, batch_size=32, lr=1e-2), tmp_path / "run").train()
    assert result.epochs_run == 1 and np.isfinite(result.best_fidelity)
    unseen = ["zyzzyva", "Unfathomableness"]
    assert not any(student.speller.one_token([student.speller.normalize_word(w) for w in unseen]))
    vectors = student.word_vectors(unseen)
    assert vectors.shape == (2, student.dim) and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
