"""Students where their users already are: each saved student in sentence-transformers and model2vec, with the
student's own vectors (max abs difference 1e-5, every loader's output L2-normalised)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from model2vec import StaticModel
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer

import students
import students.static_layout
from distill.cli.commands import main
from distill.data.targets import Targets
from distill.export.st_onnx import ST_ONNX_DIR, ST_ONNX_FILES, export_st_onnx
from distill.teacher.model import Teacher
from students.static import StaticStudent
from students.static_layout import MARKER, STUDENT_TOKENIZER
from students.tokengen import TokenGenStudent
from students.transformer import TransformerStudent
from tests.conftest import SENTENCES

TOLERANCE = 1e-5
# sentences, cased text, one token, far past the max length, punctuation
TEXTS = [*SENTENCES, "ThE QUICK Brown fox", "x", "word " * 300, "Rain, rain: go away!"]


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def loaded(path: Path, texts: list[str]) -> dict[str, np.ndarray]:
    """The vectors each loader gives for `texts` from the folder `path`."""
    return {
        "students.load": students.load(path).encode(texts),
        "sentence-transformers": unit(SentenceTransformer(str(path), device="cpu").encode(texts)),
        "model2vec": unit(StaticModel.from_pretrained(str(path)).encode(texts)),
    }


@pytest.mark.parametrize(("specials", "prompt"), [(True, ""), (True, "query: "), (False, ""), (False, "query: ")])
def test_a_static_student_loads_everywhere_with_its_own_vectors(
    tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path, specials: bool, prompt: str
) -> None:
    """The default (specials) too: its [CLS] / [SEP] rows are one marker token that the folder's tokenizer puts
    before every text, so nothing that specials gained is given back."""
    student = StaticStudent.from_teacher(tiny_teacher, tiny_targets, specials=specials).eval()
    student.config.prompt = prompt  # as a teacher with a prompt ("query: ") gives it
    assert student.config.specials is specials
    path = student.save(tmp_path / "static")
    expected = student.encode(TEXTS)
    for loader, vectors in loaded(path, TEXTS).items():
        np.testing.assert_allclose(vectors, expected, atol=TOLERANCE, err_msg=loader)
    assert (path / STUDENT_TOKENIZER).is_file() is (specials or bool(prompt))


def test_the_loaders_differ_only_where_the_layout_says(
    tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path
) -> None:
    """The empty text: a zero vector from the loaders, the [CLS] / [SEP] direction from the student; a character
    outside the vocabulary: model2vec drops its [UNK] (its own rule), sentence-transformers keeps it."""
    student = StaticStudent.from_teacher(tiny_teacher, tiny_targets).eval()
    path = student.save(tmp_path / "static")
    vectors = loaded(path, ["", "a ✓ b"])
    own = student.encode(["", "a ✓ b"])
    assert np.linalg.norm(own[0]) == pytest.approx(1.0, abs=1e-5)
    assert not vectors["sentence-transformers"][0].any() and not vectors["model2vec"][0].any()
    np.testing.assert_allclose(vectors["sentence-transformers"][1], own[1], atol=TOLERANCE)
    assert np.abs(vectors["model2vec"][1] - own[1]).max() > 1e-3


def test_the_folder_holds_the_marker_row_and_the_student_reads_its_own_table(
    tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path
) -> None:
    student = StaticStudent.from_teacher(tiny_teacher, tiny_targets).eval()
    path = student.save(tmp_path / "static")
    table = load_file(str(path / "model.safetensors"))["embedding.weight"]
    cls_id, sep_id = tiny_teacher.tokenizer.cls_token_id, tiny_teacher.tokenizer.sep_token_id
    own = student.table()
    assert table.shape == (own.shape[0] + 1, own.shape[1])
    np.testing.assert_allclose(table[-1].numpy(), (own[cls_id] + own[sep_id]).numpy(), atol=1e-6)
    assert students.load(path).table().equal(own)
    assert MARKER in (path / "tokenizer.json").read_text()


def test_a_folder_saved_before_the_layout_still_loads(
    tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path
) -> None:
    """An older static student: its own tokenizer in tokenizer.json, a table of exactly the vocabulary."""
    student = StaticStudent.from_teacher(tiny_teacher, tiny_targets).eval()
    path = student.save(tmp_path / "old")
    (path / STUDENT_TOKENIZER).replace(path / "tokenizer.json")
    save_file({"embedding.weight": student.table()}, str(path / "model.safetensors"))
    np.testing.assert_array_equal(students.load(path).encode(TEXTS), student.encode(TEXTS))


def test_a_token_generator_written_out_as_a_table_loads_everywhere(
    tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path
) -> None:
    tokengen = TokenGenStudent.from_teacher(tiny_teacher, tiny_targets, generator_epochs=1, extra_words=20)
    torch.manual_seed(0)  # as training leaves them: every row weighted, a map and a bias
    tokengen.log_weight.data.normal_(0, 0.3)
    tokengen.mix.data.add_(0.1 * torch.randn_like(tokengen.mix))
    tokengen.bias.data.fill_(0.05)
    source = tokengen.eval().save(tmp_path / "tokengen")
    result = CliRunner().invoke(main, ["write-table", "--student", str(source), "--output", str(tmp_path / "table")])
    assert result.exit_code == 0, result.output
    expected = tokengen.encode(TEXTS)
    for loader, vectors in loaded(tmp_path / "table", TEXTS).items():
        np.testing.assert_allclose(vectors, expected, atol=TOLERANCE, err_msg=loader)
    refused = CliRunner().invoke(main, ["write-table", "--student", str(tmp_path / "table"), "--output",
                                        str(tmp_path / "again")])  # fmt: skip
    assert refused.exit_code == 2 and "reads a tokengen student" in refused.output


@pytest.fixture(scope="module")
def transformer_dir(tiny_teacher: Teacher, tiny_targets: Targets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved transformer student with its sentence-transformers ONNX folder."""
    path = TransformerStudent.from_teacher(tiny_teacher, tiny_targets, layers=[0, 1]).save(
        tmp_path_factory.mktemp("st-onnx") / "transformer"
    )
    figures = export_st_onnx(students.load(path), path, SENTENCES)
    assert figures["fp32"]["max_abs_difference"] <= 1e-4 and figures["int8"]["mean_cosine_to_fp32"] > 0.99
    return path


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_onnx_folder_is_what_the_onnx_backend_runs_before_its_own_modules(
    transformer_dir: Path, precision: str
) -> None:
    """The backend runs the graph for the Transformer module (feeding the inputs it names from the tokenizer's
    output) and sentence-transformers' own modules after it; here the same, without optimum."""
    model = SentenceTransformer(str(transformer_dir), device="cpu")
    features = model.tokenize(TEXTS)
    session = ort.InferenceSession(str(transformer_dir / ST_ONNX_DIR / ST_ONNX_FILES[precision]))
    assert [o.name for o in session.get_outputs()] == ["last_hidden_state"]
    feeds = {i.name: features[i.name].numpy() for i in session.get_inputs()}
    features["token_embeddings"] = torch.from_numpy(session.run(None, feeds)[0])
    with torch.inference_mode():
        for module in list(model)[1:]:  # Pooling, Dense..., Normalize
            features = module(features)
    vectors = features["sentence_embedding"].numpy()
    expected = students.load(transformer_dir).encode(TEXTS)
    if precision == "fp32":
        np.testing.assert_allclose(vectors, expected, atol=1e-4)
    else:
        assert float(np.mean(np.sum(vectors * expected, axis=1))) > 0.99


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_sentence_transformers_onnx_backend_loads_the_folder(transformer_dir: Path, precision: str) -> None:
    """The backend itself (it needs optimum-onnx, which today pins transformers below 5 and so cannot sit beside
    sentence-transformers 6: skipped where it is not installed)."""
    pytest.importorskip("optimum.onnxruntime")
    file_name = f"{ST_ONNX_DIR}/{ST_ONNX_FILES[precision]}"
    model = SentenceTransformer(
        str(transformer_dir), device="cpu", backend="onnx", model_kwargs={"file_name": file_name}
    )
    expected = students.load(transformer_dir).encode(TEXTS)
    tolerance = 1e-4 if precision == "fp32" else 0.05
    np.testing.assert_allclose(model.encode(TEXTS), expected, atol=tolerance)


def test_a_tokenizer_the_marker_cannot_pass_still_saves_the_student(
    tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A teacher whose normalizer would change the marker (here: an upper-case marker, a lower-casing teacher):
    the folder is the student's alone, with a warning, not a failed run."""
    monkeypatch.setattr(students.static_layout, "MARKER", "[UPPER]")
    student = StaticStudent.from_teacher(tiny_teacher, tiny_targets).eval()
    path = student.save(tmp_path / "static")
    assert not (path / "modules.json").exists()
    np.testing.assert_array_equal(students.load(path).encode(TEXTS), student.encode(TEXTS))
