"""A tuned head's export ships the untuned model it was tuned from (`embeddings/`), and `distill serve` embeds with
it: /v1/embeddings gives the teacher's space while /v1/classify and /v1/tag keep the tuned graph; an export that
lacks the untuned model refuses /v1/embeddings with a 400 that says what to do."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from transformers import BertTokenizerFast

import distill.runtime.serve
import students
from distill.cli.commands import main
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.export.exporter import export_student
from distill.heads.classifier import train_classifier
from distill.heads.export import export_head
from distill.heads.head import HeadTrainConfig
from distill.heads.tagging import read_tagged, student_token_encoder, train_tagger
from distill.heads.tune_config import TuneConfig
from distill.heads.tuning import save_tuned, tune_classifier
from distill.runtime import EMBEDDINGS_DIR, OnnxClassifier, OnnxEmbedder, OnnxTagger, embeddings_of
from distill.runtime.serve import create_app
from distill.runtime.vectors import BASIS_FILE, Basis
from distill.teacher.model import Teacher
from students.transformer import TransformerStudent
from tests.test_heads import _sentences
from tests.test_tagging import _conll, _tagged
from tests.test_tuning import FAST, static_student

CHECK_TEXTS = _sentences(4, seed=3)["text"].tolist()
TEXTS = [*_sentences(2, seed=7)["text"].tolist(), "a goal in the match"]


@pytest.fixture(scope="module")
def shipped(tokenizer: BertTokenizerFast, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A static student tuned with a classify head: its folder, the head, the head's export and the untuned
    student's own export (`distill export` of it)."""
    folder = tmp_path_factory.mktemp("tuned-serve")
    student = static_student(tokenizer)
    student_dir = student.save(folder / "student")
    export_student(students.load(student_dir), folder / "plain", name="student", texts=CHECK_TEXTS)
    frame = _sentences(20, seed=0)
    head = tune_classifier(student, frame["text"].tolist(), frame["label"].tolist(), TuneConfig(**FAST),
                           model=str(student_dir))  # fmt: skip
    head_dir = save_tuned(head, student, folder / "head")
    export_head(head_dir, None, folder / "export", texts=CHECK_TEXTS)
    return {"student": student_dir, "head": head_dir, "export": folder / "export", "plain": folder / "plain"}


def vectors_of(response: object) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)


def test_a_tuned_export_ships_the_untuned_model_as_an_export_of_its_own(shipped: dict[str, Path]) -> None:
    export = shipped["export"]
    config = json.loads((export / "config.json").read_text())
    assert (config["tune"], config["teacher_space"], config["embeddings"]) == ("all", False, EMBEDDINGS_DIR)
    parity = json.loads((export / "parity.json").read_text())
    assert parity["embeddings"]["fp32"]["max_abs_difference"] <= 1e-4 and parity["head"]["texts"] > 0
    untuned = OnnxEmbedder(export / EMBEDDINGS_DIR, threads=1)
    assert untuned.config.kind == "static" and not (export / EMBEDDINGS_DIR / "head.json").exists()
    plain = OnnxEmbedder(shipped["plain"], threads=1).encode(TEXTS)
    np.testing.assert_allclose(untuned.encode(TEXTS), plain, atol=1e-6)
    np.testing.assert_allclose(embeddings_of(export, threads=1).encode(TEXTS), plain, atol=1e-6)
    tuned = OnnxClassifier(export, threads=1).encode(TEXTS)  # the graph's sentence_vectors: the tuned student's
    assert not np.allclose(tuned, plain, atol=1e-3)
    np.testing.assert_allclose(embeddings_of(shipped["plain"], threads=1).encode(TEXTS), plain, atol=1e-6)


def test_serve_embeds_with_the_untuned_model_and_classifies_with_the_tuned_one(
    shipped: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    apps: list[FastAPI] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))
    result = CliRunner().invoke(main, ["serve", "--model", str(shipped["export"]), "--threads", "1"])
    assert result.exit_code == 0, result.output
    classifier = OnnxClassifier(shipped["export"], threads=1)
    with TestClient(apps[0]) as client:
        embedded = vectors_of(client.post("/v1/embeddings", json={"input": TEXTS}))
        classified = client.post("/v1/classify", json={"input": TEXTS}).json()["data"]
        card = client.get("/v1/models").json()["data"][0]
        assert client.get(f"/v1/models/{card['id']}").json() == card
        assert client.get("/health").json()["batching"]["texts"] == 2 * len(TEXTS)  # both models' calls counted
    np.testing.assert_allclose(embedded, OnnxEmbedder(shipped["plain"]).encode(TEXTS), atol=1e-6)
    expected = classifier.predict_proba(TEXTS)
    np.testing.assert_allclose([[row["probabilities"][label] for label in classifier.labels] for row in classified],
                               expected, atol=1e-6)  # fmt: skip
    assert (card["tuned"], card["embeddings"], card["labels"]) == ("all", "untuned", classifier.labels)


def test_dimensions_are_cut_in_the_untuned_models_basis(shipped: dict[str, Path], tmp_path: Path) -> None:
    export = Path(shutil.copytree(shipped["export"], tmp_path / "export"))
    with TestClient(create_app(OnnxClassifier(export, threads=1), model_name="topics")) as client:
        full = client.post("/v1/embeddings", json={"input": TEXTS, "dimensions": 16})
        short = client.post("/v1/embeddings", json={"input": TEXTS, "dimensions": 4})
    np.testing.assert_allclose(vectors_of(full), OnnxEmbedder(shipped["plain"]).encode(TEXTS), atol=1e-6)
    assert short.status_code == 400 and short.json()["error"]["code"] == "unsupported_dimensions"  # no basis yet
    untuned = OnnxEmbedder(export / EMBEDDINGS_DIR, threads=1)
    Basis.fit(untuned.encode(_sentences(8, seed=9)["text"].tolist())).save(export / EMBEDDINGS_DIR / BASIS_FILE)
    with TestClient(create_app(OnnxClassifier(export, threads=1), model_name="topics")) as client:
        short = client.post("/v1/embeddings", json={"input": TEXTS, "dimensions": 4})
    expected = OnnxEmbedder(export / EMBEDDINGS_DIR).encode(TEXTS, dimensions=4)
    np.testing.assert_allclose(vectors_of(short), expected, atol=1e-6)


@pytest.mark.parametrize("older", [True, False], ids=["made-before-embeddings", "embeddings-null"])
def test_a_tuned_export_without_its_untuned_model_refuses_embeddings(
    shipped: dict[str, Path], tmp_path: Path, older: bool
) -> None:  # fmt: skip
    export = Path(shutil.copytree(shipped["export"], tmp_path / "export"))
    shutil.rmtree(export / EMBEDDINGS_DIR)
    config = json.loads((export / "config.json").read_text())
    if older:
        del config["embeddings"]
    else:
        config["embeddings"] = None
    (export / "config.json").write_text(json.dumps(config))
    with TestClient(create_app(OnnxClassifier(export, threads=1), model_name="topics")) as client:
        refused = client.post("/v1/embeddings", json={"input": ["a goal in the match"]})
        classified = client.post("/v1/classify", json={"input": ["a goal in the match"]})
        card = client.get("/v1/models").json()["data"][0]
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "tuned_model" and error["type"] == "invalid_request_error"
    assert "not the teacher's" in error["message"] and "distill head export" in error["message"]
    assert "untuned student's export" in error["message"] and "\n" not in error["message"]
    assert classified.status_code == 200 and (card["tuned"], card["embeddings"]) == ("all", "refused")
    with pytest.raises(DistillError, match="distill head export"):
        embeddings_of(export)


def test_serve_with_workers_embeds_with_the_untuned_model(
    shipped: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    runs: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: runs.append(kwargs))
    monkeypatch.setenv(distill.runtime.serve.SETTINGS_VARIABLE, "")  # NOTE: so that it is removed after the test
    distill.runtime.serve.serve(shipped["export"], workers=2, threads=1, access_log=False)
    assert runs[0]["workers"] == 2
    with TestClient(distill.runtime.serve.app_from_environment()) as client:  # what each worker process builds
        embedded = vectors_of(client.post("/v1/embeddings", json={"input": TEXTS}))
    np.testing.assert_allclose(embedded, OnnxEmbedder(shipped["plain"]).encode(TEXTS), atol=1e-6)


def test_an_untuned_model_that_cannot_be_loaded_leaves_the_export_without_one(
    shipped: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # fmt: skip
    head_dir = Path(shutil.copytree(shipped["head"], tmp_path / "head"))
    head_json = json.loads((head_dir / "head.json").read_text())
    head_json["config"]["model"] = str(tmp_path / "moved-away")
    (head_dir / "head.json").write_text(json.dumps(head_json))
    with caplog.at_level(logging.WARNING, logger="distill.heads.untuned"):
        export_head(head_dir, None, tmp_path / "export", texts=CHECK_TEXTS)
    assert "cannot be loaded" in caplog.text and "/v1/embeddings" in caplog.text and "moved-away" in caplog.text
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert (config["tune"], config["teacher_space"], config["embeddings"]) == ("all", False, None)
    assert not (tmp_path / "export" / EMBEDDINGS_DIR).exists()
    assert json.loads((tmp_path / "export" / "parity.json").read_text())["embeddings"] is None


def test_a_frozen_heads_export_is_left_as_it_was(shipped: dict[str, Path], tmp_path: Path) -> None:
    student = students.load(shipped["student"])
    frame = _sentences(10, seed=0)
    head = train_classifier(student.encode(frame["text"].tolist()), frame["label"].tolist(), HeadTrainConfig(),
                            model=str(shipped["student"]))  # fmt: skip
    export_head(head.save(tmp_path / "head"), None, tmp_path / "export", texts=CHECK_TEXTS)
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert not {"tune", "teacher_space", "embeddings"} & set(config)
    assert not (tmp_path / "export" / EMBEDDINGS_DIR).exists()
    with TestClient(create_app(OnnxClassifier(tmp_path / "export", threads=1), model_name="frozen")) as client:
        embedded = vectors_of(client.post("/v1/embeddings", json={"input": TEXTS}))
        assert "tuned" not in client.get("/v1/models").json()["data"][0]
    np.testing.assert_allclose(embedded, OnnxClassifier(tmp_path / "export").encode(TEXTS), atol=1e-6)


def test_a_tuned_tagger_ships_the_untuned_model_too(
    tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path
) -> None:  # fmt: skip
    student = TransformerStudent.from_teacher(tiny_teacher, tiny_targets, layers=[0, 1])
    student_dir = student.save(tmp_path / "student")
    (tmp_path / "train.conll").write_text(_conll(*_tagged(30, seed=0)))
    sentences, tags = read_tagged(tmp_path / "train.conll")
    head = train_tagger(student_token_encoder(student)(sentences), tags, HeadTrainConfig(epochs=3),
                        model=str(student_dir))  # fmt: skip
    head.config.tune = "all"  # NOTE: as `tune_tagger` leaves it; the weights need no real tuning for the export
    export_head(save_tuned(head, student, tmp_path / "head"), None, tmp_path / "export", texts=TEXTS)
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert (config["tune"], config["teacher_space"], config["embeddings"]) == ("all", False, EMBEDDINGS_DIR)
    expected = students.load(student_dir).encode(TEXTS)
    np.testing.assert_allclose(OnnxEmbedder(tmp_path / "export" / EMBEDDINGS_DIR).encode(TEXTS), expected, atol=1e-4)
    tagger = OnnxTagger(tmp_path / "export", threads=1)
    with TestClient(create_app(tagger, model_name="people")) as client:
        embedded = vectors_of(client.post("/v1/embeddings", json={"input": TEXTS}))
        tagged = client.post("/v1/tag", json={"input": ["alice smith flew to paris"]})
        card = client.get("/v1/models").json()["data"][0]
    np.testing.assert_allclose(embedded, expected, atol=1e-4)
    assert tagged.status_code == 200 and len(tagged.json()["data"][0]["words"]) == 5
    assert (card["tuned"], card["embeddings"], card["labels"]) == ("all", "untuned", tagger.labels)


def test_a_run_students_untuned_model_gets_the_runs_basis(tiny_teacher: Teacher, corpus: list[str],
                                                         tmp_path: Path) -> None:  # fmt: skip
    """A student of a finished run ships untuned with the teacher's basis `distill export` gives it: `dimensions`
    then cut the untuned vectors as the run's own export cuts them."""
    from distill.data.basis import teacher_basis
    from distill.training.config import RunConfig
    from distill.training.finished import open_run
    from distill.training.pipeline import run_from_model

    config = RunConfig(output=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), train={"epochs": 1})
    run = Path(run_from_model(tiny_teacher, corpus, config).run_dir)
    student_dir = run / "students" / "static"
    student = students.load(student_dir)
    frame = _sentences(20, seed=0)
    head = tune_classifier(student, frame["text"].tolist(), frame["label"].tolist(), TuneConfig(**FAST),
                           model=str(student_dir))  # fmt: skip
    export_head(save_tuned(head, student, tmp_path / "head"), None, tmp_path / "export", texts=CHECK_TEXTS)
    shipped = Basis.load(tmp_path / "export" / EMBEDDINGS_DIR / BASIS_FILE)
    expected = teacher_basis(open_run(run)[1])
    np.testing.assert_allclose(shipped.directions, expected.directions, atol=1e-6)
    np.testing.assert_allclose(shipped.mean, expected.mean, atol=1e-6)
    short = embeddings_of(tmp_path / "export").encode(TEXTS, dimensions=8)
    assert short.shape == (len(TEXTS), 8)


def test_distill_embed_of_a_tuned_export_uses_the_untuned_model(shipped: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    result = CliRunner().invoke(main, ["embed", "--model", str(shipped["export"]), "--input",
                                       str(tmp_path / "texts.txt"), "--output", str(tmp_path / "v.npy")])  # fmt: skip
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), OnnxEmbedder(shipped["plain"]).encode(TEXTS), atol=1e-6)
