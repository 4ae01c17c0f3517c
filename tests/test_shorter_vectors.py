"""Shorter and smaller vectors end to end: the export writes the teacher's basis, the runtime cuts vectors from it
(`OnnxEmbedder.encode(dimensions=)`), `distill embed` stores them as float32, int8 or bits and says which, and the
service answers OpenAI's `dimensions`; an export without a basis refuses anything shorter in one clear line."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from distill.cli.commands import main
from distill.data.basis import teacher_basis
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.export.exporter import export_student
from distill.runtime import OnnxEmbedder
from distill.runtime.embed import DTYPES
from distill.runtime.serve import create_app
from distill.runtime.vectors import BASIS_FILE, PRECISIONS, Basis, store
from distill.teacher.model import Teacher
from eval.models import export_is_stale
from students.static import StaticStudent
from tests.conftest import SENTENCES

TEXTS = [SENTENCES[0], "", SENTENCES[5], "x " * 100, SENTENCES[7]]


@pytest.fixture(scope="module")
def shortened(tiny_teacher: Teacher, tiny_targets: Targets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static student of the tiny teacher exported with the teacher's basis."""
    student = StaticStudent.from_teacher(tiny_teacher, tiny_targets)
    out = tmp_path_factory.mktemp("shortened") / "export"
    export_student(student, out, name="static", texts=SENTENCES, basis=teacher_basis(tiny_targets))
    return out


@pytest.fixture(scope="module")
def short_embedder(shortened: Path) -> OnnxEmbedder:
    return OnnxEmbedder(shortened, threads=1)


def numpy_projection(basis: Basis, vectors: np.ndarray, dimensions: int) -> np.ndarray:
    projected = (vectors.astype(np.float64) - basis.mean) @ basis.directions[:dimensions].T.astype(np.float64)
    norms = np.linalg.norm(projected, axis=1, keepdims=True)
    return projected / np.where(norms > 0, norms, 1.0)


def test_the_export_writes_the_teachers_basis_and_the_embedder_cuts_vectors_from_it(
    shortened: Path, short_embedder: OnnxEmbedder, tiny_targets: Targets
) -> None:
    expected = teacher_basis(tiny_targets)
    assert (shortened / BASIS_FILE).is_file() and short_embedder.basis is not None
    np.testing.assert_array_equal(short_embedder.basis.directions, expected.directions)
    full = short_embedder.encode(TEXTS)  # (n, 32)
    short = short_embedder.encode(TEXTS, dimensions=8)  # (n, 8)
    assert short.shape == (len(TEXTS), 8) and short.dtype == np.float32
    np.testing.assert_allclose(short, numpy_projection(expected, full, 8), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(short_embedder.encode(TEXTS, dimensions=short_embedder.dim), full)


def test_a_texts_short_vector_is_the_same_alone_and_in_a_batch(short_embedder: OnnxEmbedder) -> None:
    together = short_embedder.encode(TEXTS, batch_size=2, dimensions=5)
    for i, text in enumerate(TEXTS):
        np.testing.assert_array_equal(short_embedder.encode([text], dimensions=5)[0], together[i])


@pytest.mark.parametrize("dimensions", [0, -3, 33])
def test_dimensions_out_of_range_are_refused_in_one_line(short_embedder: OnnxEmbedder, dimensions: int) -> None:
    with pytest.raises(DistillError, match=r"between 1 and 32 \(this model's vectors have 32") as error:
        short_embedder.encode(TEXTS, dimensions=dimensions)
    assert "\n" not in str(error.value)


def test_an_export_without_a_basis_gives_its_full_vectors_only(embedder: OnnxEmbedder) -> None:
    assert embedder.basis is None
    np.testing.assert_array_equal(embedder.encode(TEXTS, dimensions=embedder.dim), embedder.encode(TEXTS))
    with pytest.raises(DistillError, match=r"no teacher's basis.*export it again") as error:
        embedder.encode(TEXTS, dimensions=8)
    assert "\n" not in str(error.value)


def test_a_basis_of_another_size_is_refused(shortened: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(shortened, tmp_path / "export")
    Basis(np.zeros(4, np.float32), np.eye(4, dtype=np.float32)).save(copy / BASIS_FILE)
    with pytest.raises(DistillError, match="4 dimensions, the model's vectors of 32"):
        OnnxEmbedder(copy)


def test_eval_makes_an_export_without_a_basis_again(shortened: Path, export_dir: Path) -> None:
    assert not export_is_stale(shortened)
    assert export_is_stale(export_dir)  # written without a basis, as exports were before shorter vectors


# distill embed


def _embed(model: Path, tmp_path: Path, output: str, *options: str) -> tuple[int, str]:
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS))
    args = ["embed", "--model", str(model), "--input", str(tmp_path / "texts.txt"), "--output", str(tmp_path / output)]
    result = CliRunner().invoke(main, [*args, *options])
    return result.exit_code, result.output


def test_embed_writes_binary_vectors_of_8_dimensions_and_says_so(
    shortened: Path, short_embedder: OnnxEmbedder, tmp_path: Path
) -> None:
    code, output = _embed(shortened, tmp_path, "bits.npy", "--dimensions", "8", "--vector-precision", "binary")
    assert code == 0, output
    bits = np.load(tmp_path / "bits.npy")
    assert bits.dtype == np.uint8 and bits.shape == (len(TEXTS), 1)  # 8 bits, one byte a text
    expected = store(short_embedder.basis, short_embedder.encode(TEXTS), 8, "binary")
    np.testing.assert_array_equal(bits, expected)
    description = json.loads((tmp_path / "bits.npy.json").read_text())
    assert description["dimensions"] == 8 and description["precision"] == "binary"
    assert description["count"] == len(TEXTS) and description["bytes_per_vector"] == 1
    assert "8 dimensions, binary: 1 bytes a vector" in output


@pytest.mark.parametrize("precision", ["float32", "int8", "binary"])
def test_embed_to_jsonl_names_the_form_on_every_line(
    shortened: Path, short_embedder: OnnxEmbedder, tmp_path: Path, precision: str
) -> None:
    code, output = _embed(shortened, tmp_path, "v.jsonl", "--dimensions", "12", "--vector-precision", precision)
    assert code == 0, output
    records = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert {(r["dimensions"], r["precision"]) for r in records} == {(12, precision)}
    stored = np.array([r["embedding"] for r in records])
    expected = store(short_embedder.basis, short_embedder.encode(TEXTS), 12, precision)
    np.testing.assert_allclose(stored, expected, atol=1e-6)
    assert stored.shape == (len(TEXTS), 2 if precision == "binary" else 12)


def test_embed_int8_of_the_full_dim_works_without_a_basis(export_dir: Path, embedder: OnnxEmbedder, tmp_path: Path):
    code, output = _embed(export_dir, tmp_path, "v.npy", "--vector-precision", "int8")
    assert code == 0, output
    int8 = np.load(tmp_path / "v.npy")
    assert int8.dtype == np.int8 and int8.shape == (len(TEXTS), embedder.dim)
    assert json.loads((tmp_path / "v.npy.json").read_text())["precision"] == "int8"


@pytest.mark.parametrize(
    ("options", "message"),
    [(["--dimensions", "8"], "no teacher's basis"), (["--vector-precision", "binary"], "no teacher's basis"),
     (["--dimensions", "17"], "between 1 and 16")],
)  # fmt: skip
def test_embed_refuses_what_the_export_cannot_give_in_one_line(
    export_dir: Path, tmp_path: Path, options: list[str], message: str
) -> None:
    code, output = _embed(export_dir, tmp_path, "v.npy", *options)
    assert code == 2 and message in output and len(output.strip().splitlines()) == 1, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.txt"]


def test_embeds_vector_precisions_are_the_stored_forms_and_its_help_gives_their_bytes() -> None:
    option = next(p for p in main.commands["embed"].params if p.name == "vector_precision")
    assert tuple(option.type.choices) == tuple(DTYPES) == PRECISIONS
    help_text = " ".join(CliRunner().invoke(main, ["embed", "--help"]).output.split())
    for words in ("4 K bytes", "K bytes", "K / 8 bytes"):
        assert words in help_text


# distill serve


@pytest.fixture()
def short_client(short_embedder: OnnxEmbedder) -> Iterator[TestClient]:
    with TestClient(create_app(short_embedder, model_name="short", batch_size=4)) as client:
        yield client


def _vectors(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)


def test_serve_gives_vectors_of_the_dimensions_asked_for(
    short_client: TestClient, short_embedder: OnnxEmbedder
) -> None:
    texts = [t for t in TEXTS if t]
    vectors = _vectors(short_client.post("/v1/embeddings", json={"input": texts, "dimensions": 6}))
    assert vectors.shape == (len(texts), 6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors, short_embedder.encode(texts, dimensions=6), atol=1e-6)
    body = short_client.post("/v1/embeddings", json={"input": texts[:1], "dimensions": 6, "encoding_format": "base64"})
    decoded = np.frombuffer(base64.b64decode(body.json()["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, vectors[0])
    full = _vectors(short_client.post("/v1/embeddings", json={"input": texts, "dimensions": short_embedder.dim}))
    np.testing.assert_allclose(full, short_embedder.encode(texts), atol=1e-6)


def test_serve_gives_a_text_the_same_short_vector_whatever_it_is_sent_with(short_client: TestClient) -> None:
    alone = _vectors(short_client.post("/v1/embeddings", json={"input": [SENTENCES[3]], "dimensions": 5}))
    crowd = [SENTENCES[1], "x " * 60, SENTENCES[3], SENTENCES[9], "a", SENTENCES[2]]  # more than one model call
    together = _vectors(short_client.post("/v1/embeddings", json={"input": crowd, "dimensions": 5}))
    np.testing.assert_array_equal(together[2], alone[0])


@pytest.mark.parametrize("dimensions", [0, 33])
def test_serve_refuses_dimensions_out_of_range(short_client: TestClient, dimensions: int) -> None:
    response = short_client.post("/v1/embeddings", json={"input": ["a"], "dimensions": dimensions})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "dimensions" and "between 1 and 32" in error["message"]


def test_serve_of_an_export_without_a_basis_refuses_shorter_vectors(embedder: OnnxEmbedder) -> None:
    with TestClient(create_app(embedder, model_name="old")) as client:
        response = client.post("/v1/embeddings", json={"input": ["a"], "dimensions": 8})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "unsupported_dimensions" and "export it again" in error["message"]
        assert client.post("/v1/embeddings", json={"input": ["a"], "dimensions": embedder.dim}).status_code == 200
