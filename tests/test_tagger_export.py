"""Taggers in production: a tokens head exported with its transformer as one graph of per-token tag probabilities,
`OnnxTagger` giving each word its tag as the tagger was trained, and `distill serve` answering POST /v1/tag."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from huggingface_hub import metadata_load

import distill.heads.tagger_export
import students
from distill.cli.commands import main
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.heads.export import export_head
from distill.heads.head import ClassifierHead, HeadTrainConfig
from distill.heads.tagging import predict_tags, read_tagged, student_token_encoder, train_tagger
from distill.runtime import OnnxEmbedder, OnnxTagger, split_words
from distill.runtime.serve import create_app, load_model
from distill.teacher.model import Teacher
from students.transformer import TransformerStudent
from tests.conftest import export_tiny_static
from tests.test_tagging import _conll, _tagged

TEXTS = ["alice smith flew to paris yesterday", "Peter Brown, from Rome, met Anna Jones."]


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tagged") / "train.conll"
    path.write_text(_conll(*_tagged(80, seed=0)))
    return path


@pytest.fixture(scope="module")
def tagger(tiny_teacher: Teacher, tiny_targets: Targets, tagged: Path,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:  # fmt: skip
    """(student folder, head folder, export folder): a tagger on a transformer student, exported by the CLI."""
    folder = tmp_path_factory.mktemp("tagger")
    student_dir = TransformerStudent.from_teacher(tiny_teacher, tiny_targets, layers=[0, 1]).save(folder / "student")
    sentences, tags = read_tagged(tagged)
    encode = student_token_encoder(students.load(student_dir))
    train_tagger(encode(sentences), tags, HeadTrainConfig(epochs=20), model=str(student_dir)).save(folder / "head")
    command = ["head", "export", "--head", str(folder / "head"), "--output", str(folder / "export"), "--data",
               str(tagged), "--check-texts", "30"]  # fmt: skip
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output.strip().splitlines()[-1])
    assert printed["fp32"]["max_abs_difference"] <= 1e-4 and printed["texts"] == 30 + 3  # and the edge texts
    assert metadata_load(folder / "export" / "README.md")["pipeline_tag"] == "token-classification"  # its card
    return student_dir, folder / "head", folder / "export"


def torch_tags(student_dir: Path, head_dir: Path, texts: list) -> list[list[str]]:
    """What the torch tagger gives: the head on the student's word vectors, as `distill head eval` reads them."""
    encode = student_token_encoder(students.load(student_dir))
    return predict_tags(ClassifierHead.load(head_dir), encode([split_words(t) for t in texts]))


def test_the_runtime_tags_each_word_as_the_torch_tagger(tagger: tuple[Path, Path, Path]) -> None:
    student_dir, head_dir, export_dir = tagger
    onnx = OnnxTagger(export_dir, threads=1)
    tagged = onnx.predict(TEXTS)
    assert [[w for w, _ in words] for words in tagged] == [split_words(t) for t in TEXTS]
    assert [w for w, _ in tagged[1]][:4] == ["Peter", "Brown", ",", "from"]  # punctuation is a word, as in CoNLL
    assert [[t for _, t in words] for words in tagged] == torch_tags(student_dir, head_dir, TEXTS)
    words = ["alice", "smith"]
    assert onnx.predict([words]) == [list(zip(words, torch_tags(student_dir, head_dir, [words])[0], strict=True))]
    probabilities = onnx.predict_proba(TEXTS)
    assert [p.shape for p in probabilities] == [(len(split_words(t)), len(onnx.labels)) for t in TEXTS]
    np.testing.assert_allclose(np.concatenate(probabilities).sum(axis=1), 1.0, atol=1e-5)


def test_the_graph_still_gives_the_students_sentence_vectors(tagger: tuple[Path, Path, Path]) -> None:
    student_dir, _, export_dir = tagger
    expected = students.load(student_dir).encode(TEXTS)
    np.testing.assert_allclose(OnnxEmbedder(export_dir).encode(TEXTS), expected, atol=1e-4)


def test_words_past_the_max_length_get_the_fallback_tag(tagger: tuple[Path, Path, Path]) -> None:
    onnx = OnnxTagger(tagger[2])
    words = onnx.predict_scored([["paris"] * 200])[0]
    assert words[0][2] == words[0][2] and words[-1][1] == "O" and words[-1][2] != words[-1][2]  # NaN probability


def test_int8_is_measured_into_parity_json(tagger: tuple[Path, Path, Path]) -> None:
    parity = json.loads((tagger[2] / "parity.json").read_text())
    assert parity["head"]["task"] == "tokens" and parity["head"]["int8"]["agreement"] > 0.9
    assert parity["fp32"]["max_abs_difference"] <= 1e-4
    assert OnnxTagger(tagger[2], precision="int8").predict(TEXTS[:1])[0][0][0] == "alice"


def test_a_tagger_cannot_be_exported_with_a_model_without_token_vectors(
    tagger: tuple[Path, Path, Path], tmp_path: Path, tokenizer: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, head_dir, export_dir = tagger
    with pytest.raises(DistillError, match="an ONNX export, which gives sentence vectors only"):
        export_head(head_dir, str(export_dir), tmp_path / "out", texts=TEXTS)
    static = export_tiny_static(tmp_path / "static-export", tokenizer)
    with pytest.raises(DistillError, match="reads token vectors in context"):
        export_head(head_dir, str(static), tmp_path / "out", texts=TEXTS)
    monkeypatch.setattr(distill.heads.tagger_export, "HEAD_TOLERANCE", -1.0)  # no graph can meet it
    with pytest.raises(DistillError, match="differ from the torch tagger's"):
        export_head(head_dir, None, tmp_path / "out", texts=TEXTS)
    assert not (tmp_path / "out").exists()


def test_serve_answers_tag_requests_for_a_tagger(tagger: tuple[Path, Path, Path]) -> None:
    _, _, export_dir = tagger
    onnx = load_model(export_dir, "fp32", 1)
    assert isinstance(onnx, OnnxTagger)
    with TestClient(create_app(onnx, model_name="ner", max_batch=4, max_text_chars=200)) as client:
        for body, texts in (({"input": TEXTS[0]}, TEXTS[:1]), ({"input": TEXTS}, TEXTS),
                            ({"input": [["alice", "smith"], ["rome"]]}, [["alice", "smith"], ["rome"]])):  # fmt: skip
            response = client.post("/v1/tag", json=body)
            assert response.status_code == 200, response.text
            got = [[(w["word"], w["tag"]) for w in d["words"]] for d in response.json()["data"]]
            assert got == onnx.predict(texts)
        assert client.post("/v1/tag", json={"input": ["x"] * 5}).json()["error"]["code"] == "too_many_inputs"
        assert client.post("/v1/classify", json={"input": "x"}).status_code == 404
        embedded = client.post("/v1/embeddings", json={"input": TEXTS}).json()["data"]
        np.testing.assert_allclose([d["embedding"] for d in embedded], onnx.encode(TEXTS), atol=1e-6)
        assert client.get("/v1/models").json()["data"][0]["labels"] == onnx.labels


def test_tag_on_a_server_without_a_tagger_is_a_404_that_says_why(tmp_path: Path, tokenizer: object) -> None:
    embedder = OnnxEmbedder(export_tiny_static(tmp_path / "static", tokenizer))
    with TestClient(create_app(embedder, model_name="m")) as client:
        response = client.post("/v1/tag", json={"input": "alice"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "no_tagger"


NO_TORCH = """
import sys, json
for name in ("torch", "transformers", "sentence_transformers"):
    sys.modules[name] = None  # any import of these now fails
from distill.runtime import OnnxTagger
print(json.dumps(OnnxTagger(sys.argv[1], threads=1).predict(sys.argv[2:])))
"""


def test_the_runtime_tags_without_torch(tagger: tuple[Path, Path, Path]) -> None:
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(tagger[2]), *TEXTS], capture_output=True, text=True,
                            cwd=Path(__file__).parents[1])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [[tuple(p) for p in words] for words in json.loads(result.stdout)] == OnnxTagger(tagger[2]).predict(TEXTS)
