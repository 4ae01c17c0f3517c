"""A head trained together with its model (`distill head train --tune`): what trains, early stopping, the
contrastive start, the few-label sample, and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from transformers import BertTokenizerFast

import distill.heads.tuning as tuning
from distill.cli.commands import main
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.heads.contrastive import contrastive_start, label_pairs
from distill.heads.data import per_class
from distill.heads.models import teacher_student
from distill.heads.tune_config import TuneConfig
from distill.heads.tuning import optimizers, sparse_tables, trainable, tune_classifier
from distill.teacher.model import Teacher
from students.base import Student
from students.static import StaticConfig, StaticStudent
from students.transformer import TransformerStudent
from tests.test_heads import _sentences

FAST = {"lr": 3e-3, "head_lr": 1e-2, "table_lr": 1e-1, "epochs": 3, "patience": 3, "batch_size": 16, "threads": 1}


def static_student(tokenizer: BertTokenizerFast) -> StaticStudent:
    """A 16-wide static student with a random table over the real vocabulary."""
    config = StaticConfig(dim=16, vocab_size=tokenizer.vocab_size, max_length=32, teacher="tiny", factored=False)
    student = StaticStudent(config, tokenizer.backend_tokenizer)
    student.init_table(np.random.default_rng(0).standard_normal((tokenizer.vocab_size, 16)))
    return student


def transformer_student(teacher: Teacher, targets: Targets) -> TransformerStudent:
    return TransformerStudent.from_teacher(teacher, targets, layers=[0, 1])


@pytest.fixture(scope="module")
def topics() -> tuple[list[str], list[str]]:
    frame = _sentences(24, seed=0)
    return frame["text"].tolist(), frame["label"].tolist()


def _snapshot(student: Student) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in student.named_parameters()}


# (student, tune setting, the parameter names it must train: a predicate)
SETTINGS = {
    "transformer-last": ("transformer", "last", lambda n: n.startswith("encoder.encoder.layer.1.")),
    "transformer-query": ("transformer", "query", lambda n: ".attention.self.query." in n),
    "transformer-all": ("transformer", "all", lambda n: True),
    "static-all": ("static", "all", lambda n: n == "embedding.weight"),
    "teacher-all": ("teacher", "all", lambda n: True),
}


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_a_tune_setting_trains_its_parameters_and_no_other(
    setting: str, topics: tuple[list[str], list[str]], tokenizer: BertTokenizerFast, tiny_teacher: Teacher,
    tiny_targets: Targets,
) -> None:  # fmt: skip
    kind, tune, intended = SETTINGS[setting]
    builders = {"static": lambda: static_student(tokenizer), "teacher": lambda: teacher_student(tiny_teacher),
                "transformer": lambda: transformer_student(tiny_teacher, tiny_targets)}  # fmt: skip
    student = builders[kind]()
    before = _snapshot(student)
    head = tune_classifier(student, *topics, TuneConfig(tune=tune, **FAST))
    assert head.config.tune == tune and head.config.metrics["best_epoch"] >= 1
    after = _snapshot(student)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(intended(name) for name in changed), sorted(changed)
    untouched = {name for name in before if not intended(name)}
    assert untouched.isdisjoint(changed)
    if tune in ("last", "query"):  # every weight and bias of the chosen modules moved
        assert changed == {name for name in before if intended(name)}
    if kind != "static":  # rows of tokens no text holds stay as they were: the table trains sparsely
        unused = sorted(set(range(tokenizer.vocab_size)) - {i for ids in student.token_ids(topics[0]) for i in ids})
        table = "encoder.embeddings.word_embeddings.weight"
        assert torch.equal(before[table][unused], after[table][unused])


def test_early_stopping_keeps_the_best_epoch(
    topics: tuple[list[str], list[str]], tokenizer: BertTokenizerFast, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation scores scripted to peak at epoch 2: training stops 2 epochs later, back at epoch 2's weights."""
    student = static_student(tokenizer)
    scores, seen = iter([0.5, 0.7, 0.9, 0.8, 0.8, 1.0]), []

    def scripted(student: Student, *args: object) -> tuple[float, float, float]:
        seen.append(student.embedding.weight.detach().clone())
        score = next(scores)
        return score, 1.0 - score, score

    monkeypatch.setattr(tuning, "_validate", scripted)
    head = tune_classifier(student, *topics, TuneConfig(**{**FAST, "epochs": 10, "patience": 2}))
    metrics = head.config.metrics
    assert (metrics["best_epoch"], metrics["epochs_run"], metrics["valid_macro_f1"]) == (2, 4, 0.9)
    assert metrics["valid_macro_f1_by_epoch"] == [0.5, 0.7, 0.9, 0.8, 0.8]
    assert torch.equal(student.embedding.weight, seen[2]) and not torch.equal(seen[2], seen[4])


def test_label_pairs_are_balanced_and_labelled_right() -> None:
    label_ids = np.array([0, 0, 0, 1, 1, 2])
    a, b, target = label_pairs(label_ids, pairs_per_text=3, rng=np.random.default_rng(0))
    assert len(a) == len(b) == len(target) == 6 * 2 * 3 and target.sum() == 6 * 3
    np.testing.assert_array_equal(label_ids[a] == label_ids[b], target == 1)
    assert np.all(a[(target == 1) & (label_ids[a] != 2)] != b[(target == 1) & (label_ids[a] != 2)])


def test_the_contrastive_start_pulls_labels_together(
    topics: tuple[list[str], list[str]], tokenizer: BertTokenizerFast
) -> None:
    student = static_student(tokenizer)
    texts, labels = topics
    label_ids = np.unique(labels, return_inverse=True)[1]
    config = TuneConfig(**FAST, contrastive_epochs=3)
    params = trainable(student, "all")
    with sparse_tables(student, params):
        losses = contrastive_start(student, student.token_ids(texts), label_ids, optimizers(student, params, config),
                                   config)  # fmt: skip
    assert len(losses) == 3 and losses[-1] < 0.5 * losses[0]
    vectors = student.encode(texts)
    same = label_ids[:, None] == label_ids[None, :]
    cosine = vectors @ vectors.T
    assert cosine[same].mean() > cosine[~same].mean() + 0.5


def test_tuning_with_a_contrastive_start_records_it(
    topics: tuple[list[str], list[str]], tiny_teacher: Teacher, tiny_targets: Targets
) -> None:
    student = transformer_student(tiny_teacher, tiny_targets)
    head = tune_classifier(student, *topics, TuneConfig(tune="query", contrastive_epochs=1, **FAST))
    assert head.config.metrics["tune"]["contrastive_epochs"] == 1 and head.config.metrics["valid_macro_f1"] > 0


def test_per_class_draws_n_of_each_class_seeded(topics: tuple[list[str], list[str]]) -> None:
    texts, labels = per_class(*topics, n=5, seed=1)
    assert sorted(labels) == sorted([label for label in set(topics[1]) for _ in range(5)])
    assert (texts, labels) == per_class(*topics, n=5, seed=1) and texts != per_class(*topics, n=5, seed=2)[0]
    assert all(topics[1][topics[0].index(t)] == label for t, label in zip(texts, labels, strict=True))
    assert per_class(*topics, n=100)[0] == topics[0]  # every class has fewer: all of them, in order


def test_refusals_are_one_clear_error(
    tokenizer: BertTokenizerFast, tiny_teacher: Teacher, tiny_targets: Targets, monkeypatch: pytest.MonkeyPatch
) -> None:
    for tune in ("last", "query"):
        with pytest.raises(DistillError, match=f"static student has no layers.*--tune {tune} means nothing"):
            trainable(static_student(tokenizer), tune)
    monkeypatch.setattr(tuning, "QUERY_NAMES", ("no_such_projection",))  # as ModernBERT's fused Wqkv
    with pytest.raises(DistillError, match="'bert' model has no separate attention query projection"):
        trainable(transformer_student(tiny_teacher, tiny_targets), "query")
    with pytest.raises(DistillError, match="--contrastive-epochs trains the model"):
        TuneConfig(tune="none", contrastive_epochs=2)
    with pytest.raises(DistillError, match="unknown --tune 'some'"):
        TuneConfig(tune="some")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tune", "last"], "a static student has no layers or attention: --tune last means nothing for it"),
        (["--tune", "none", "--contrastive-epochs", "2"], "--contrastive-epochs trains the model"),
        (["--per-class", "4", "--task", "tokens"], "--per-class is for --task classify"),
    ],
)
def test_cli_refusals_are_one_line_and_exit_2(
    args: list[str], message: str, tokenizer: BertTokenizerFast, tmp_path: Path
) -> None:
    student_dir = static_student(tokenizer).save(tmp_path / "student")
    _sentences(6, seed=0).to_csv(tmp_path / "train.csv", index=False)
    data, out = str(tmp_path / "train.csv"), str(tmp_path / "head")
    result = CliRunner().invoke(main, ["head", "train", "--model", str(student_dir), "--data", data, "--output", out,
                                       *args])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "head").exists()


def test_an_export_folder_cannot_be_tuned(export_dir: Path, tmp_path: Path) -> None:
    _sentences(6, seed=0).to_csv(tmp_path / "train.csv", index=False)
    result = CliRunner().invoke(main, ["head", "train", "--model", str(export_dir), "--data",
                                       str(tmp_path / "train.csv"), "--output", str(tmp_path / "head"),
                                       "--tune", "all"])  # fmt: skip
    assert result.exit_code == 2 and "is an ONNX export, which cannot be trained" in result.output


def test_a_static_students_table_rate_is_chosen_on_the_validation_split(
    topics: tuple[list[str], list[str]], tokenizer: BertTokenizerFast, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no --table-lr each of TABLE_LRS is tried from the same table; the best by validation macro-F1 (scripted
    here to be the middle one) is kept, table and head, exactly as a run at that rate alone leaves them."""
    from distill.heads.tune_config import TABLE_LRS

    scripted = dict(zip(TABLE_LRS, [0.5, 0.9, 0.7], strict=True))
    real = tuning._tune

    def scored(student: Student, texts: list[str], labels: list[str], config: TuneConfig, *args: str) -> object:
        head = real(student, texts, labels, config, *args)
        head.config.metrics["valid_macro_f1"] = scripted[config.table_lr]
        return head

    monkeypatch.setattr(tuning, "_tune", scored)
    student = static_student(tokenizer)
    head = tune_classifier(student, *topics, TuneConfig(**{**FAST, "table_lr": None}))
    tried = head.config.metrics["tune"]["table_lr_by_validation_f1"]
    assert tried == {f"{lr:g}": score for lr, score in scripted.items()}
    assert head.config.metrics["tune"]["lr"] == TABLE_LRS[1] and head.config.metrics["valid_macro_f1"] == 0.9
    monkeypatch.setattr(tuning, "_tune", real)
    alone = static_student(tokenizer)
    tune_classifier(alone, *topics, TuneConfig(**{**FAST, "table_lr": TABLE_LRS[1]}))
    assert torch.equal(student.embedding.weight, alone.embedding.weight)
    last = static_student(tokenizer)
    tune_classifier(last, *topics, TuneConfig(**{**FAST, "table_lr": TABLE_LRS[2]}))
    assert not torch.equal(student.embedding.weight, last.embedding.weight)
