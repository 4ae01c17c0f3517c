"""A tuned head ships as a frozen one does: saved with its tuned model, evaluated, exported into one ONNX graph
(parity-checked), read by OnnxClassifier and served; everything that describes it says the vectors are tuned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fastapi.testclient import TestClient
from transformers import BertTokenizerFast

import students
from distill.cli.commands import main
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.heads.export import export_head
from distill.heads.head import ClassifierHead
from distill.heads.models import TUNED_MODEL_DIR, model_of
from distill.heads.tune_config import TuneConfig
from distill.heads.tuning import save_tuned, tune_classifier
from distill.runtime import OnnxClassifier, OnnxEmbedder
from distill.runtime.serve import create_app
from distill.teacher.model import Teacher
from tests.test_heads import _sentences
from tests.test_tuning import FAST, static_student, transformer_student

CHECK_TEXTS = _sentences(4, seed=3)["text"].tolist()


@pytest.fixture(scope="module", params=["static", "transformer"])
def tuned(
    request: pytest.FixtureRequest, tokenizer: BertTokenizerFast, tiny_teacher: Teacher, tiny_targets: Targets,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, dict]:  # fmt: skip
    """(the untuned student's folder, the tuned head's folder, the export's parity figures)."""
    folder = tmp_path_factory.mktemp(f"tuned-{request.param}")
    if request.param == "static":
        student = static_student(tokenizer)
    else:
        student = transformer_student(tiny_teacher, tiny_targets)
    student_dir = student.save(folder / "student")
    frame = _sentences(20, seed=0)
    head = tune_classifier(student, frame["text"].tolist(), frame["label"].tolist(), TuneConfig(**FAST),
                           model=str(student_dir))  # fmt: skip
    head_dir = save_tuned(head, student, folder / "head")
    parity = export_head(head_dir, None, folder / "export", texts=CHECK_TEXTS)
    return student_dir, head_dir, parity


def test_the_head_folder_holds_the_tuned_model(tuned: tuple[Path, Path, dict]) -> None:
    student_dir, head_dir, _ = tuned
    head = ClassifierHead.load(head_dir)
    assert head.config.tune == "all" and head.config.model == str(student_dir)
    assert model_of(head_dir, head) == str(head_dir / TUNED_MODEL_DIR)
    texts = _sentences(3, seed=5)["text"].tolist()
    tuned_vectors = students.load(head_dir / TUNED_MODEL_DIR).encode(texts)
    assert not np.allclose(tuned_vectors, students.load(student_dir).encode(texts), atol=1e-3)
    with pytest.raises(DistillError, match="was tuned together with its model"):
        model_of(head_dir, head, str(student_dir))


def test_the_tuned_export_matches_torch_and_says_it_is_tuned(tuned: tuple[Path, Path, dict]) -> None:
    student_dir, head_dir, parity = tuned
    export = head_dir.parent / "export"
    texts = [*_sentences(3, seed=6)["text"].tolist(), "", "football " * 60]
    student, head = students.load(head_dir / TUNED_MODEL_DIR), ClassifierHead.load(head_dir)
    with torch.no_grad():
        expected = torch.softmax(head(torch.from_numpy(student.encode(texts))), dim=1).numpy()
    np.testing.assert_allclose(OnnxClassifier(export, threads=1).predict_proba(texts), expected, atol=1e-4)
    assert parity["head"]["fp32"]["max_abs_difference"] <= 1e-4 and 0 <= parity["head"]["int8"]["agreement"] <= 1
    config = json.loads((export / "config.json").read_text())
    assert (config["tune"], config["teacher_space"], config["embeddings"]) == ("all", False, "embeddings")
    untuned = students.load(student_dir).encode(texts)  # the model it was tuned from, shipped for embeddings
    np.testing.assert_allclose(OnnxEmbedder(export / "embeddings").encode(texts), untuned, atol=1e-4)
    assert parity["embeddings"]["fp32"]["max_abs_difference"] <= 1e-4
    assert json.loads((export / "head.json").read_text())["config"]["tune"] == "all"


def test_the_cli_tunes_evaluates_exports_and_serves(
    tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path
) -> None:  # fmt: skip
    student_dir = transformer_student(tiny_teacher, tiny_targets).save(tmp_path / "student")
    _sentences(20, seed=0).to_csv(tmp_path / "train.csv", index=False)
    _sentences(8, seed=1).to_csv(tmp_path / "test.csv", index=False)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    trained = CliRunner().invoke(main, ["head", "train", "--model", str(student_dir), "--data",
                                        str(tmp_path / "train.csv"), "--output", str(tmp_path / "head"),
                                        "--tune", "last", "--per-class", "15", *flags])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    report = json.loads(trained.stdout.strip().splitlines()[-1])
    assert report["tune"] == "last" and report["texts"] == 45 and report["seconds"] > 0
    assert (tmp_path / "head" / TUNED_MODEL_DIR / "student.json").is_file()
    evaluated = CliRunner().invoke(main, ["head", "eval", "--head", str(tmp_path / "head"), "--data",
                                          str(tmp_path / "test.csv")])  # fmt: skip
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["n"] == 24, evaluated.output
    exported = CliRunner().invoke(main, ["head", "export", "--head", str(tmp_path / "head"), "--output",
                                         str(tmp_path / "export"), "--data", str(tmp_path / "test.csv")])  # fmt: skip
    assert exported.exit_code == 0, exported.output
    card = (tmp_path / "export" / "README.md").read_text()
    assert "--tune last" in card and "no longer the teacher's" in card and "`embeddings/`" in card
    classifier = OnnxClassifier(tmp_path / "export", threads=1)
    with TestClient(create_app(classifier, model_name="topics")) as client:
        answer = client.post("/v1/classify", json={"input": ["a goal in the match"]})
        embedded = client.post("/v1/embeddings", json={"input": ["a goal in the match"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"][0]["label"] == classifier.predict(["a goal in the match"])[0]
    untuned = students.load(student_dir).encode(["a goal in the match"])  # not the tuned graph's vectors
    np.testing.assert_allclose(embedded.json()["data"][0]["embedding"], untuned[0], atol=1e-4)
