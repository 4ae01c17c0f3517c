"""A tagger trained together with its transformer (`distill head train --task tokens --tune`): what trains,
early stopping on entity F1, the saved head and its model, the CLI and `head compare`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import BertTokenizerFast

import distill.heads.tune_tagger as tune_tagger_module
from distill.cli.commands import main
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.heads.head import ClassifierHead
from distill.heads.models import TUNED_MODEL_DIR, teacher_student
from distill.heads.tagging import score_tagger, student_token_encoder
from distill.heads.tune_config import TuneConfig
from distill.heads.tune_tagger import tune_tagger
from distill.heads.tuning import save_tuned
from distill.teacher.model import Teacher
from students.transformer import TransformerStudent
from tests.test_tagging import _conll, _tagged
from tests.test_tuning import FAST, static_student

SENTENCES, TAGS = _tagged(40, seed=0)
INTENDED = {
    "last": lambda n: n.startswith("encoder.encoder.layer.1."),
    "query": lambda n: ".attention.self.query." in n,
    "all": lambda n: True,
}


def _printed(output: str) -> dict:
    """The JSON object a command printed last (progress bars share the output in CliRunner)."""
    return json.loads(output[output.rindex('{"') :].strip())


def _student(teacher: Teacher, targets: Targets) -> TransformerStudent:
    return TransformerStudent.from_teacher(teacher, targets, layers=[0, 1])


@pytest.mark.parametrize("tune", list(INTENDED))
def test_a_tune_setting_trains_its_parameters_and_no_other(tune: str, tiny_teacher: Teacher,
                                                           tiny_targets: Targets) -> None:  # fmt: skip
    student = _student(tiny_teacher, tiny_targets)
    before = {name: p.detach().clone() for name, p in student.named_parameters()}
    head = tune_tagger(student, SENTENCES, TAGS, TuneConfig(tune=tune, **FAST))
    assert head.config.task == "tokens" and head.config.tune == tune
    assert head.labels == ["B-LOC", "B-PER", "I-PER", "O"]
    metrics = head.config.metrics
    assert metrics["best_epoch"] >= 1 and metrics["n_valid_sentences"] == 4
    assert round(metrics["valid_entity_f1"], 6) == max(metrics["valid_entity_f1_by_epoch"])
    changed = {n for n, p in student.named_parameters() if not torch.equal(before[n], p)}
    assert changed and all(INTENDED[tune](n) for n in changed), sorted(changed)
    if tune != "all":  # every weight and bias of the chosen modules moved
        assert changed == {n for n in before if INTENDED[tune](n)}


def test_early_stopping_keeps_the_best_epochs_weights(tiny_teacher: Teacher, tiny_targets: Targets,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Held-out entity F1 scripted to peak at epoch 1: training stops 2 epochs later, back at epoch 1's weights."""
    student = _student(tiny_teacher, tiny_targets)
    scores, seen = iter([0.4, 0.9, 0.6, 0.5, 1.0]), []

    def scripted(*args: object) -> tuple[float, float, float]:
        seen.append(student.encoder.encoder.layer[1].output.dense.weight.detach().clone())
        score = next(scores)
        return score, 1.0 - score, score

    monkeypatch.setattr(tune_tagger_module, "_validate", scripted)
    head = tune_tagger(student, SENTENCES, TAGS, TuneConfig(tune="last", **{**FAST, "epochs": 10, "patience": 2}))
    metrics = head.config.metrics
    assert (metrics["best_epoch"], metrics["epochs_run"], metrics["valid_entity_f1"]) == (1, 3, 0.9)
    assert torch.equal(student.encoder.encoder.layer[1].output.dense.weight, seen[1])
    assert not torch.equal(seen[1], seen[3])


def test_a_tuned_teacher_tagger_scores_what_its_saved_model_scores(tiny_teacher: Teacher, tmp_path: Path) -> None:
    """The head folder holds the tuned model: `head eval` reads the test file with it, as in the process."""
    student = teacher_student(tiny_teacher)
    head = tune_tagger(student, SENTENCES, TAGS, TuneConfig(tune="all", **FAST), model="tiny", encoder="teacher")
    save_tuned(head, student, tmp_path / "head")
    test = _tagged(12, seed=1)
    (tmp_path / "test.conll").write_text(_conll(*test))
    expected = score_tagger(head, student_token_encoder(student)(test[0]), test[1])
    result = CliRunner().invoke(main, ["head", "eval", "--head", str(tmp_path / "head"), "--data",
                                       str(tmp_path / "test.conll")])  # fmt: skip
    assert result.exit_code == 0, result.output
    got = _printed(result.output)
    assert got["entity_f1"] == pytest.approx(expected["entity_f1"]) and got["tokens"] == expected["tokens"]
    assert ClassifierHead.load(tmp_path / "head").config.tune == "all"
    assert (tmp_path / "head" / TUNED_MODEL_DIR / "config.json").is_file()


def test_refusals_are_one_clear_error(tokenizer: BertTokenizerFast, tiny_teacher: Teacher,
                                     tiny_targets: Targets) -> None:  # fmt: skip
    with pytest.raises(DistillError, match="token vectors in context"):
        tune_tagger(static_student(tokenizer), SENTENCES, TAGS, TuneConfig(tune="all", **FAST))
    student = _student(tiny_teacher, tiny_targets)
    with pytest.raises(DistillError, match="contrastive"):
        tune_tagger(student, SENTENCES, TAGS, TuneConfig(tune="all", contrastive_epochs=1, **FAST))
    with pytest.raises(DistillError, match="one tag per word"):
        tune_tagger(student, SENTENCES, [t[:-1] for t in TAGS], TuneConfig(tune="all", **FAST))
    with pytest.raises(DistillError, match="held-out sentences"):
        tune_tagger(student, SENTENCES[:1], TAGS[:1], TuneConfig(tune="all", **FAST))


def test_cli_trains_and_compares_tuned_taggers(tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path) -> None:
    folder = _student(tiny_teacher, tiny_targets).save(tmp_path / "transformer")
    (tmp_path / "train.conll").write_text(_conll(SENTENCES, TAGS))
    (tmp_path / "test.conll").write_text(_conll(*_tagged(12, seed=1)))
    flags = ["--epochs", "2", "--lr", "3e-3", "--head-lr", "1e-2", "--threads", "1"]
    result = CliRunner().invoke(main, ["head", "train", "--task", "tokens", "--model", str(folder), "--data",
                                       str(tmp_path / "train.conll"), "--output", str(tmp_path / "head"), "--tune",
                                       "last", *flags])  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = _printed(result.output)
    assert printed["tune"] == "last" and printed["task"] == "tokens" and printed["seconds"] > 0
    assert (tmp_path / "head" / TUNED_MODEL_DIR).is_dir()
    result = CliRunner().invoke(main, ["head", "compare", "--task", "tokens", "--data", str(tmp_path / "train.conll"),
                                       "--test", str(tmp_path / "test.conll"), "--models", str(folder), "--tune",
                                       "none,last", "--output", str(tmp_path / "compare"), *flags])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "compare" / "compare.json").read_text())["rows"]
    assert [row["tune"] for row in rows] == ["none", "last"]
    assert all(0 <= row["scores"]["entity_f1"] <= 1 and row["train_seconds"] > 0 for row in rows)
