"""A classification head shipped with its model: one ONNX graph per precision, the runtime's OnnxClassifier,
`distill head export` and `POST /v1/classify`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fastapi.testclient import TestClient
from transformers import BertTokenizerFast

import distill.heads.export
import students
from distill.cli.commands import main
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.export.exporter import EDGE_TEXTS, export_student
from distill.heads.classifier import train_classifier
from distill.heads.export import export_classifier, export_head
from distill.heads.head import ClassifierHead, HeadTrainConfig
from distill.runtime import OnnxClassifier, OnnxEmbedder
from distill.runtime.serve import create_app
from distill.teacher.model import Teacher
from students.static import StaticConfig, StaticStudent
from students.transformer import TransformerStudent

TOPICS = {
    "sport": "football goal match team player coach stadium league referee score",
    "food": "pasta garlic tomato bread cheese soup kitchen recipe oven salad",
    "music": "violin guitar orchestra song concert piano melody drum singer album",
}
FILLER = ["the", "a", "and", "of", "on", "with", "in", "at", "today"]
KEY = "s3cret-key"


def sentences(n_per_class: int, seed: int) -> tuple[list[str], list[str]]:
    """Texts of four topic words among filler, and their topics: three classes a bag of words separates."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, words in TOPICS.items():
        for _ in range(n_per_class):
            texts.append(" ".join(rng.permutation([*rng.choice(words.split(), 4), *rng.choice(FILLER, 3)])))
            labels.append(label)
    return texts, labels


CHECK_TEXTS = sentences(8, seed=1)[0]


@pytest.fixture(scope="module")
def student_dirs(
    tokenizer: BertTokenizerFast, tiny_teacher: Teacher, tiny_targets: Targets, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """A saved static student (a flat graph) and a saved transformer student (a padded graph)."""
    folder = tmp_path_factory.mktemp("students")
    config = StaticConfig(dim=16, vocab_size=tokenizer.vocab_size, max_length=32, teacher="tiny", factored=False)
    static = StaticStudent(config, tokenizer.backend_tokenizer)
    static.init_table(np.random.default_rng(0).standard_normal((tokenizer.vocab_size, 16)))
    transformer = TransformerStudent.from_teacher(tiny_teacher, tiny_targets, layers=[1])
    transformer.finalize()
    return {"static": static.save(folder / "static"), "transformer": transformer.save(folder / "transformer")}


def train_head(student_dir: Path, hidden: int, folder: Path) -> Path:
    texts, labels = sentences(20, seed=0)
    vectors = students.load(student_dir).encode(texts)
    head = train_classifier(vectors, labels, HeadTrainConfig(hidden=hidden, epochs=60), model=str(student_dir))
    return head.save(folder)


@pytest.fixture(scope="module", params=[("static", 0), ("static", 8), ("transformer", 0), ("transformer", 8)],
                ids=["static-linear", "static-mlp", "transformer-linear", "transformer-mlp"])  # fmt: skip
def exported(
    request: pytest.FixtureRequest, student_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path, dict]:
    """(student folder, head folder, export folder, parity figures) of a head exported with its student."""
    kind, hidden = request.param
    folder = tmp_path_factory.mktemp(f"{kind}-{hidden}")
    head_dir = train_head(student_dirs[kind], hidden, folder / "head")
    parity = export_head(head_dir, None, folder / "topics", texts=CHECK_TEXTS)  # the model the head names
    return student_dirs[kind], head_dir, folder / "topics", parity


def torch_probabilities(student_dir: Path, head_dir: Path, texts: list[str]) -> np.ndarray:
    """The torch student's vectors through the torch head, then softmax: (len(texts), classes)."""
    vectors = torch.from_numpy(students.load(student_dir).encode(texts))
    with torch.no_grad():
        return torch.softmax(ClassifierHead.load(head_dir)(vectors), dim=1).numpy()


def test_onnx_probabilities_match_the_torch_head(exported: tuple[Path, Path, Path, dict]) -> None:
    student_dir, head_dir, out, parity = exported
    texts = [*sentences(5, seed=3)[0], "", "a", "football " * 100]
    classifier = OnnxClassifier(out, threads=1)
    probabilities = classifier.predict_proba(texts, batch_size=4)
    np.testing.assert_allclose(probabilities, torch_probabilities(student_dir, head_dir, texts), atol=1e-4)
    head = ClassifierHead.load(head_dir)
    assert classifier.labels == head.labels == sorted(TOPICS)
    assert classifier.predict(texts) == head.predict(students.load(student_dir).encode(texts))
    assert parity["head"]["fp32"]["max_abs_difference"] <= 1e-4 and parity["head"]["kind"] == head.config.kind
    config = json.loads((out / "config.json").read_text())
    assert config["inputs"] == ("flat" if student_dir.name == "static" else "padded")
    assert config["outputs"] == ["sentence_vectors", "probabilities"] and config["name"] == "topics"


def test_the_graph_still_gives_the_students_vectors(exported: tuple[Path, Path, Path, dict]) -> None:
    student_dir, _, out, _ = exported
    texts = sentences(3, seed=4)[0]
    np.testing.assert_allclose(OnnxEmbedder(out).encode(texts), students.load(student_dir).encode(texts), atol=1e-4)


def test_int8_is_measured_into_parity_json(exported: tuple[Path, Path, Path, dict]) -> None:
    student_dir, head_dir, out, parity = exported
    assert json.loads((out / "parity.json").read_text()) == parity
    texts = [*CHECK_TEXTS, *EDGE_TEXTS]
    int8 = OnnxClassifier(out, precision="int8").predict_proba(texts)
    expected = torch_probabilities(student_dir, head_dir, texts)
    figures = parity["head"]["int8"]
    assert figures["max_abs_difference"] == pytest.approx(float(np.abs(int8 - expected).max()), abs=1e-6)
    assert figures["agreement"] == np.mean(int8.argmax(axis=1) == expected.argmax(axis=1))
    assert parity["bytes"]["int8"] == (out / "model_int8.onnx").stat().st_size
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=1e-5)


def test_the_classifier_batches_and_answers_every_shape(exported: tuple[Path, Path, Path, dict]) -> None:
    _, _, out, _ = exported
    classifier = OnnxClassifier(out)
    texts = sentences(4, seed=5)[0]
    probabilities = classifier.predict_proba(texts)
    assert probabilities.shape == (len(texts), 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    singles = np.concatenate([classifier.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(classifier.predict_proba(texts, batch_size=5), singles, atol=1e-6)
    assert classifier.predict_proba([]).shape == (0, 3)
    with pytest.raises(TypeError, match="list of texts"):
        classifier.predict_proba("one text")


def test_a_folder_without_a_head_says_so(student_dirs: dict[str, Path], tmp_path: Path) -> None:
    export_student(students.load(student_dirs["static"]), tmp_path / "plain", name="plain", texts=CHECK_TEXTS)
    with pytest.raises(DistillError) as error:
        OnnxClassifier(tmp_path / "plain")
    assert str(error.value) == (f"{str(tmp_path / 'plain')!r} holds no classification head (no head.json): export "
                                "one with `distill head export`")  # fmt: skip


def test_a_head_joins_an_export_folder_and_not_twice(student_dirs: dict[str, Path], tmp_path: Path) -> None:
    student_dir = student_dirs["static"]
    export_student(students.load(student_dir), tmp_path / "plain", name="plain", texts=CHECK_TEXTS)
    head_dir = train_head(student_dir, 0, tmp_path / "head")
    parity = export_head(head_dir, str(tmp_path / "plain"), tmp_path / "joined", texts=CHECK_TEXTS)
    assert "export" in parity["head"]["reference"] and parity["head"]["fp32"]["max_abs_difference"] <= 1e-4
    np.testing.assert_allclose(OnnxClassifier(tmp_path / "joined").predict_proba(CHECK_TEXTS),
                               torch_probabilities(student_dir, head_dir, CHECK_TEXTS), atol=1e-4)  # fmt: skip
    with pytest.raises(DistillError, match="already holds a head"):
        export_head(head_dir, str(tmp_path / "joined"), tmp_path / "twice", texts=CHECK_TEXTS)
    assert not (tmp_path / "twice").exists()


def test_a_head_on_a_teacher_ships_with_a_copy_of_it(tiny_teacher: Teacher, tmp_path: Path) -> None:
    texts, labels = sentences(10, seed=0)
    head = train_classifier(tiny_teacher.sentence_vectors(texts), labels, HeadTrainConfig(hidden=8, epochs=30))
    parity = export_classifier(head, tiny_teacher, tmp_path / "teacher", texts=CHECK_TEXTS)
    assert "teacher" in parity["head"]["reference"] and parity["torch_fidelity"] == pytest.approx(1.0, abs=1e-5)
    with torch.no_grad():
        expected = torch.softmax(head(torch.from_numpy(tiny_teacher.sentence_vectors(CHECK_TEXTS))), dim=1).numpy()
    np.testing.assert_allclose(OnnxClassifier(tmp_path / "teacher").predict_proba(CHECK_TEXTS), expected, atol=1e-4)


def test_mistakes_are_refused_and_write_nothing(
    student_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head_dir = train_head(student_dirs["static"], 0, tmp_path / "head")
    with pytest.raises(DistillError, match="the head takes 16-dim vectors; the model gives 32"):
        export_head(head_dir, str(student_dirs["transformer"]), tmp_path / "out", texts=CHECK_TEXTS)
    with pytest.raises(DistillError, match="needs texts"):
        export_head(head_dir, None, tmp_path / "out", texts=[])
    head = ClassifierHead.load(head_dir)
    head.config.task = "tokens"  # a token-tagging head
    with pytest.raises(DistillError, match="only a classify head"):
        export_classifier(head, students.load(student_dirs["static"]), tmp_path / "out", texts=CHECK_TEXTS)
    monkeypatch.setattr(distill.heads.export, "HEAD_TOLERANCE", -1.0)  # no graph can meet it
    with pytest.raises(DistillError, match="differ from the torch head's"):
        export_head(head_dir, None, tmp_path / "out", texts=CHECK_TEXTS)
    assert [p.name for p in tmp_path.iterdir()] == ["head"]


def test_cli_exports_and_prints_the_parity_figures(student_dirs: dict[str, Path], tmp_path: Path) -> None:
    head_dir = train_head(student_dirs["transformer"], 8, tmp_path / "head")
    (tmp_path / "check.txt").write_text("\n".join(CHECK_TEXTS) + "\n\n")
    result = CliRunner().invoke(main, ["head", "export", "--head", str(head_dir), "--output", str(tmp_path / "out"),
                                       "--data", str(tmp_path / "check.txt"), "--check-texts", "10"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["labels"] == sorted(TOPICS) and report["texts"] == 10 + len(EDGE_TEXTS)
    assert report["fp32"]["max_abs_difference"] <= 1e-4 and 0 <= report["int8"]["agreement"] <= 1
    assert OnnxClassifier(tmp_path / "out").predict(["football match"])[0] in TOPICS


@pytest.mark.parametrize(("data", "message"), [("check.txt", "not a head folder"), ("check.csv", "no column 'text'"),
                                               ("none.txt", "does not exist")])  # fmt: skip
def test_cli_mistakes_are_one_line_and_exit_2(tmp_path: Path, data: str, message: str) -> None:
    (tmp_path / "check.txt").write_text("hello\n")
    (tmp_path / "check.csv").write_text("sentence\nhello\n")
    result = CliRunner().invoke(main, ["head", "export", "--head", str(tmp_path), "--data", str(tmp_path / data),
                                       "--output", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_head_export_has_help_for_every_option() -> None:
    result = CliRunner().invoke(main, ["head", "export", "--help"])
    assert result.exit_code == 0 and "--head" in result.output and "--data" in result.output
    options = [p for p in main.commands["head"].commands["export"].params if isinstance(p, click.Option)]
    assert [o.name for o in options if not o.help] == []


@pytest.fixture(scope="module")
def static_head(student_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The export the service is tested on: the static student with a linear head."""
    folder = tmp_path_factory.mktemp("served")
    head_dir = train_head(student_dirs["static"], 0, folder / "head")
    export_head(head_dir, None, folder / "topics", texts=CHECK_TEXTS)
    return folder / "topics"


@pytest.fixture()
def client(static_head: Path) -> Iterator[TestClient]:
    with TestClient(create_app(OnnxClassifier(static_head, threads=1), model_name="topics", max_batch=4)) as client:
        yield client


def test_classify_answers_each_text_with_its_label_and_probabilities(client: TestClient, static_head: Path) -> None:
    texts = sentences(1, seed=6)[0]
    response = client.post("/v1/classify", json={"input": texts, "model": "anything"})
    assert response.status_code == 200, response.text
    body = response.json()
    classifier = OnnxClassifier(static_head)
    expected = classifier.predict_proba(texts)
    assert body["object"] == "list" and body["model"] == "topics"
    assert [d["index"] for d in body["data"]] == [0, 1, 2] and {d["object"] for d in body["data"]} == {"classification"}
    assert [d["label"] for d in body["data"]] == classifier.predict(texts)
    got = np.array([[d["probabilities"][label] for label in classifier.labels] for d in body["data"]])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    tokens = sum(len(ids) for ids in classifier.token_ids(texts))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    single = client.post("/v1/classify", json={"input": texts[0]}).json()["data"]
    assert len(single) == 1 and single[0]["probabilities"] == body["data"][0]["probabilities"]
    assert client.post("/v1/classify", json={"input": []}).json()["data"] == []


def test_a_head_export_still_serves_embeddings_and_lists_its_labels(client: TestClient, static_head: Path) -> None:
    texts = sentences(1, seed=7)[0]
    data = client.post("/v1/embeddings", json={"input": texts}).json()["data"]
    vectors = np.array([d["embedding"] for d in data], dtype=np.float32)
    np.testing.assert_allclose(vectors, OnnxEmbedder(static_head).encode(texts), atol=1e-6)
    assert client.get("/v1/models").json()["data"][0]["labels"] == sorted(TOPICS)
    client.post("/v1/classify", json={"input": "x"})
    assert 'distill_requests_total{endpoint="/v1/classify",status="200"}' in client.get("/metrics").text


def test_classify_has_the_guards_of_embeddings(client: TestClient, static_head: Path) -> None:
    too_many = client.post("/v1/classify", json={"input": ["a"] * 5})
    assert too_many.status_code == 413 and too_many.json()["error"]["code"] == "too_many_inputs"
    invalid = client.post("/v1/classify", json={"input": 3})
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "invalid_input"
    app = create_app(OnnxClassifier(static_head, threads=1), model_name="topics", api_key=KEY)
    with TestClient(app) as guarded:
        refused = guarded.post("/v1/classify", json={"input": ["a"]})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        allowed = guarded.post("/v1/classify", json={"input": ["a"]}, headers={"authorization": f"Bearer {KEY}"})
        assert allowed.status_code == 200


def test_classify_without_a_head_is_a_404_that_says_why(student_dirs: dict[str, Path], tmp_path: Path) -> None:
    export_student(students.load(student_dirs["static"]), tmp_path / "plain", name="plain", texts=CHECK_TEXTS)
    with TestClient(create_app(OnnxEmbedder(tmp_path / "plain"), model_name="plain")) as client:
        response = client.post("/v1/classify", json={"input": ["a"]})
        assert "labels" not in client.get("/v1/models").json()["data"][0]
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "no_classification_head" and "distill head export" in error["message"]


def test_serve_loads_a_classifier_for_a_folder_with_a_head(static_head: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))
    result = CliRunner().invoke(main, ["serve", "--model", str(static_head), "--threads", "1"])
    assert result.exit_code == 0, result.output
    with TestClient(apps[0]) as client:
        assert client.post("/v1/classify", json={"input": ["pasta with garlic"]}).status_code == 200


NO_TORCH = """
import sys
for name in ("torch", "transformers", "sentence_transformers"):
    sys.modules[name] = None  # any import of these now fails
import numpy as np
from distill.runtime import OnnxClassifier
np.save(sys.argv[2], OnnxClassifier(sys.argv[1], precision="int8", threads=1).predict_proba(sys.argv[3:]))
"""


def test_the_runtime_classifies_without_torch(static_head: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(static_head), str(tmp_path / "p.npy"), *CHECK_TEXTS],
                            capture_output=True, text=True, cwd=Path(__file__).parents[1])  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = OnnxClassifier(static_head, precision="int8").predict_proba(CHECK_TEXTS)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-6)
