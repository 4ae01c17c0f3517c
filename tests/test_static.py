from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import students
from distill.data.corpus import Split, assign_splits
from distill.data.targets import Targets, build_targets
from distill.errors import DistillError
from distill.teacher.model import Dense, Teacher
from distill.training.trainer import TrainConfig, Trainer, fidelity
from students.static import StaticConfig, StaticStudent, context_table, sentence_space
from tests.conftest import SENTENCES
from tests.families import tiny_teacher as family_teacher


@pytest.fixture()
def static(tiny_teacher: Teacher, corpus: list[str], tmp_path: Path) -> StaticStudent:
    targets = build_targets(tiny_teacher, corpus, assign_splits(corpus), tmp_path / "cache")
    return StaticStudent.from_teacher(tiny_teacher, targets)


def test_encode_gives_normalised_float32_in_input_order(static: StaticStudent) -> None:
    vectors = static.encode(SENTENCES, batch_size=5)
    assert vectors.shape == (len(SENTENCES), static.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[2], static.encode([SENTENCES[2]])[0], atol=1e-6)


def test_empty_text_gives_a_zero_vector_without_specials_and_theirs_with(
    tiny_teacher: Teacher, tiny_targets: Targets
) -> None:
    assert not StaticStudent.from_teacher(tiny_teacher, tiny_targets, specials=False).encode([""]).any()
    with_specials = StaticStudent.from_teacher(tiny_teacher, tiny_targets).encode([""])  # [CLS] [SEP], as the teacher
    np.testing.assert_allclose(np.linalg.norm(with_specials), 1.0, atol=1e-5)


def test_save_load_round_trip_is_exact(static: StaticStudent, tmp_path: Path) -> None:
    static.finalize()  # as the pipeline does after training: fold the training factors into one table
    path = static.save(tmp_path / "static")
    loaded = students.load(path)
    assert isinstance(loaded, StaticStudent) and loaded.config == static.config
    np.testing.assert_array_equal(loaded.encode(SENTENCES), static.encode(SENTENCES))


def test_specials_give_the_teachers_special_tokens_rows_from_context(
    tiny_teacher: Teacher, tiny_targets: Targets
) -> None:
    """A new student counts [CLS] / [SEP] as the teacher's mean pooling does; an old one (no field) does not."""
    student = StaticStudent.from_teacher(tiny_teacher, tiny_targets)
    cls_id, sep_id = tiny_teacher.tokenizer.cls_token_id, tiny_teacher.tokenizer.sep_token_id
    ids = student.token_ids(SENTENCES[:1])[0]
    assert student.config.specials and (ids[0], ids[-1]) == (cls_id, sep_id)
    plain = StaticStudent.from_teacher(tiny_teacher, tiny_targets, specials=False)
    assert not set(plain.token_ids(SENTENCES[:1])[0]) & {cls_id, sep_id}
    assert not np.allclose(
        student.embedding.weight[cls_id].detach().numpy(), plain.embedding.weight[cls_id].detach().numpy()
    )
    assert StaticConfig(dim=8).specials is False  # what a student saved before the field reads as


def test_context_table_averages_a_tokens_vectors_in_context() -> None:
    rng = np.random.default_rng(0)
    vocab_vectors = rng.normal(size=(40, 4)).astype(np.float32)
    ids = np.concatenate([np.repeat(np.arange(39), 20), [7, 7]])  # token 39 is never seen
    token_vectors = vocab_vectors[ids] * 2 + 1  # context is an affine map of the vector alone
    token_vectors[-2:] = 0.0
    table = context_table(vocab_vectors, [(ids, token_vectors)], shrinkage=0.0)
    expected = vocab_vectors * 2 + 1
    expected[7] = expected[7] * 20 / 22
    np.testing.assert_allclose(table[:39], expected[:39], atol=1e-3)
    np.testing.assert_allclose(table[39], expected[39], atol=0.05)  # from the fitted map of vectors alone


def test_unknown_student_and_bad_init() -> None:
    with pytest.raises(DistillError, match="unknown student"):
        students.student_class("nope")
    with pytest.raises(DistillError, match="init"):
        StaticConfig(dim=8, init="random")


def _start_fidelity(student: StaticStudent, targets: Targets) -> float:
    index = targets.indices(Split.VALID)
    ids = student.token_ids([targets.texts[i] for i in index])
    return fidelity(student, ids, np.asarray(targets.sentence_vectors[index]))


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta"])
def test_every_tokenizer_kind_starts_close_to_the_teacher_and_trains(
    family: str, corpus: list[str], tmp_path: Path
) -> None:
    teacher = family_teacher(family, corpus)
    targets = build_targets(teacher, corpus, assign_splits(corpus), tmp_path / "cache")
    student = StaticStudent.from_teacher(teacher, targets)
    specials = set(student.token_ids([""])[0])  # [CLS] / [SEP] or <s> / </s>, as the teacher adds them
    assert (
        len(specials) == 2 and set(student.token_ids(SENTENCES)[0]) & set(teacher.tokenizer.all_special_ids) == specials
    )
    start = _start_fidelity(student, targets)
    assert start > 0.95  # the context init; each token's vector alone gives about 0.85 here
    result = Trainer(student, targets, TrainConfig(epochs=1, batch_size=32, lr=1e-2), tmp_path / "run").train()
    assert result.epochs_run == 1 and result.best_fidelity >= start - 1e-6


def test_a_teacher_with_dense_layers_gets_a_table_in_its_sentence_space(corpus: list[str], tmp_path: Path) -> None:
    base = family_teacher("roberta", corpus)
    teacher = Teacher(base.model, base.tokenizer, normalize=True, max_length=64, name="tiny-dense",
                      dense=nn.Sequential(Dense(32, 16, activation=nn.Tanh())))  # fmt: skip
    targets = build_targets(teacher, corpus, assign_splits(corpus), tmp_path / "cache")
    assert targets.token_vectors.shape[1] == 32 and targets.dim == 16
    student = StaticStudent.from_teacher(teacher, targets)
    assert student.dim == 16 and _start_fidelity(student, targets) > 0.95


def test_token_vectors_wider_than_sentence_vectors_without_a_dense_are_a_bug() -> None:
    with pytest.raises(ValueError, match="no Dense maps them"):
        sentence_space(SimpleNamespace(dense=None), 32, 16)
    assert sentence_space(SimpleNamespace(dense=None), 16, 16) is None


def test_context_table_maps_token_vectors_before_averaging() -> None:
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(10), 5)
    token_vectors = rng.normal(size=(50, 6)).astype(np.float32)
    linear = torch.from_numpy(rng.normal(size=(6, 3)).astype(np.float32))
    table = context_table(rng.normal(size=(10, 3)).astype(np.float32), [(ids, token_vectors)], shrinkage=0.0,
                          transform=lambda block: block @ linear)  # fmt: skip
    expected = np.stack([token_vectors[ids == i].mean(axis=0) for i in range(10)]) @ linear.numpy()
    np.testing.assert_allclose(table, expected, atol=1e-4)


def test_a_tokenizer_past_the_embedding_table_is_a_clear_error(corpus: list[str], tmp_path: Path) -> None:
    teacher = family_teacher("xlm-roberta", corpus)
    targets = build_targets(teacher, corpus, assign_splits(corpus), tmp_path / "cache")
    teacher.model.resize_token_embeddings(len(teacher.tokenizer) - 3)
    with pytest.raises(DistillError, match="embedding table has"):
        StaticStudent.from_teacher(teacher, targets)
