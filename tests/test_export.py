import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import distill.export.exporter
import students
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.export.exporter import export_student
from distill.runtime import OnnxEmbedder
from distill.teacher.model import Teacher
from students.base import Student
from students.static import StaticStudent
from students.tokengen import TokenGenStudent
from students.transformer import TransformerStudent
from tests.conftest import SENTENCES

BUILDERS = {
    "static": lambda teacher, targets: StaticStudent.from_teacher(teacher, targets),
    "transformer": lambda teacher, targets: TransformerStudent.from_teacher(teacher, targets, layers=[1]),
    "tokengen": lambda teacher, targets: TokenGenStudent.from_teacher(
        teacher, targets, generator_epochs=1, extra_words=20
    ),
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def saved(
    request: pytest.FixtureRequest,
    tiny_teacher: Teacher,
    tiny_targets: Targets,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A saved student of each kind, as a run leaves it."""
    student = BUILDERS[request.param](tiny_teacher, tiny_targets)
    student.finalize()
    return student.save(tmp_path_factory.mktemp(request.param) / "student")


@pytest.fixture(scope="module")
def exported(saved: Path, tiny_teacher: Teacher) -> tuple[Path, dict]:
    out = saved.parent / "export"
    parity = export_student(students.load(saved), out, name="mine", texts=SENTENCES,
                            teacher_vectors=tiny_teacher.sentence_vectors(SENTENCES))  # fmt: skip
    return out, parity


def test_fp32_export_gives_the_saved_students_vectors(saved: Path, exported: tuple[Path, dict]) -> None:
    out, parity = exported
    texts = [*SENTENCES, "one more, much longer sentence " * 3, "x"]
    expected = students.load(saved).encode(texts)
    np.testing.assert_allclose(OnnxEmbedder(out).encode(texts, batch_size=3), expected, atol=1e-4)
    assert parity["fp32"]["max_abs_difference"] <= 1e-4


def test_int8_is_close_to_fp32_and_its_loss_is_reported(exported: tuple[Path, dict]) -> None:
    out, parity = exported
    fp32, int8 = OnnxEmbedder(out).encode(SENTENCES), OnnxEmbedder(out, precision="int8").encode(SENTENCES)
    cosines = (fp32 * int8).sum(axis=1)
    assert cosines.min() > 0.9 and not np.array_equal(fp32, int8)  # quantised, yet close
    assert parity["int8"]["mean_cosine_to_fp32"] == pytest.approx(float(cosines.mean()), abs=0.02)
    assert parity["int8"]["fidelity_loss"] == pytest.approx(parity["torch_fidelity"] - parity["int8"]["fidelity"])
    assert (out / "model_int8.onnx").stat().st_size < (out / "model.onnx").stat().st_size


def test_export_folder_has_what_production_needs(saved: Path, exported: tuple[Path, dict]) -> None:
    out, _ = exported
    config = json.loads((out / "config.json").read_text())
    student = students.load(saved)
    assert config["name"] == "mine" and config["kind"] == student.kind and config["dim"] == student.dim
    assert config["normalize"] is True and config["max_length"] == student.config.max_length
    assert config["add_special_tokens"] == student.special_tokens and config["teacher"] == "tiny"
    assert config["inputs"] == ("flat" if student.kind == "static" else "padded")  # a table lookup takes flat ids
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "model_int8.onnx", "tokenizer.json", "parity.json"}


def test_runtime_handles_empty_long_and_batched_texts(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    embedder = OnnxEmbedder(out, threads=1)
    long_text = "word " * 5000
    vectors = embedder.encode(["", long_text, *SENTENCES], batch_size=4)
    assert vectors.shape == (len(SENTENCES) + 2, embedder.dim) and vectors.dtype == np.float32
    assert len(embedder.token_ids([long_text])[0]) == embedder.config.max_length  # truncated, not crashed
    norms = np.linalg.norm(vectors[1:], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    # the length-sorted batches come back in input order
    np.testing.assert_allclose(vectors[2:], np.concatenate([embedder.encode([s]) for s in SENTENCES]), atol=1e-5)
    assert embedder.encode([]).shape == (0, embedder.dim)


def test_runtime_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DistillError, match=r"not an exported student: config\.json is missing"):
        OnnxEmbedder(tmp_path)


def test_an_export_that_disagrees_with_torch_fails_and_writes_nothing(
    tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(distill.export.exporter, "FP32_TOLERANCE", -1.0)  # no export can meet it
    student: Student = BUILDERS["static"](tiny_teacher, tiny_targets)
    with pytest.raises(DistillError, match="differs from the torch student"):
        export_student(student, tmp_path / "export", name="static", texts=SENTENCES)
    assert not (tmp_path / "export").exists()


NO_TORCH = """
import sys
for name in ("torch", "transformers", "sentence_transformers"):
    sys.modules[name] = None  # any import of these now fails
import numpy as np
from distill.runtime import OnnxEmbedder
import distill.runtime.classifier, distill.runtime.embed, distill.runtime.serve, distill.runtime.serve_tag  # noqa: E501
import distill.runtime.tagger  # all of it imports without torch
vectors = OnnxEmbedder(sys.argv[1], precision="int8", threads=1).encode(["The cat sat on the mat.", ""])
np.save(sys.argv[2], vectors)
assert not any(m.split(".")[0] in ("torch", "transformers") for m in sys.modules if sys.modules[m] is not None)
"""


def test_runtime_embeds_without_torch(exported: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = exported
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(out), str(tmp_path / "v.npy")],
                            capture_output=True, text=True, cwd=Path(__file__).parents[1])  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = OnnxEmbedder(out, precision="int8").encode(["The cat sat on the mat.", ""])
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), expected, atol=1e-6)


def test_export_does_not_import_the_eval_suite() -> None:
    """The layers go one way: eval uses export, export never eval (the import circle of issue 13)."""
    code = (
        "import sys, distill.export.exporter; assert not [m for m in sys.modules if m.split('.')[0] == 'eval'], 'eval'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr


def test_token_generator_exports_its_generator_not_a_table(tiny_teacher: Teacher, tiny_targets: Targets,
                                                           tmp_path: Path) -> None:  # fmt: skip
    import onnx

    student = BUILDERS["tokengen"](tiny_teacher, tiny_targets).eval()
    export_student(student, tmp_path / "export", name="tokengen", texts=SENTENCES)
    shapes = [tuple(t.dims) for t in onnx.load(str(tmp_path / "export" / "model.onnx")).graph.initializer]
    assert (student.config.vocab_size, student.dim) not in shapes  # no generated table baked in
    assert (student.config.vocab_size, student.features.shape[1]) in shapes  # the vocabulary's n-gram ids
