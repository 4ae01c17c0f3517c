"""Every supported teacher family, built tiny in memory, through run -> eval -> export with all three students."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

import students
from distill.cli.commands import main
from distill.data.corpus import assign_splits
from distill.data.targets import Targets, build_targets
from distill.errors import DistillError
from distill.export.exporter import export_student
from distill.teacher.model import Teacher
from students.layer_subset import SUPPORTED_FAMILIES, default_layers
from students.transformer import TransformerStudent
from tests.conftest import SENTENCES
from tests.families import save_teacher, tiny_teacher

TEXTS = [*SENTENCES, "An unusually long sentence about the committee, the river and the orchestra playing in the rain."]


@pytest.fixture(scope="module")
def teachers(corpus: list[str]) -> dict[str, Teacher]:
    return {name: tiny_teacher(name, corpus) for name in SUPPORTED_FAMILIES}


def _targets(teacher: Teacher, corpus: list[str], cache: Path) -> Targets:
    return build_targets(teacher, corpus, assign_splits(corpus), cache)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("name", SUPPORTED_FAMILIES)
def test_all_layers_reproduce_the_teacher_and_reload_everywhere(
    name: str, teachers: dict[str, Teacher], corpus: list[str], tmp_path: Path
) -> None:
    teacher = teachers[name]
    every = list(range(teacher.model.config.num_hidden_layers))
    student = TransformerStudent.from_teacher(teacher, _targets(teacher, corpus, tmp_path / "cache"), layers=every)
    assert type(student.encoder) is type(teacher.model)
    expected = teacher.sentence_vectors(TEXTS)
    assert _cosines(student.encode(TEXTS), expected).min() >= 0.9999
    path = student.save(tmp_path / "student")
    reloaded = students.load(path)
    np.testing.assert_allclose(reloaded.encode(TEXTS), student.encode(TEXTS), atol=1e-5)
    assert type(AutoModel.from_pretrained(str(path))) is type(teacher.model)
    st = SentenceTransformer(str(path), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(st, student.encode(TEXTS), atol=1e-5)


@pytest.mark.parametrize("name", SUPPORTED_FAMILIES)
def test_every_family_exports_fused_where_the_fusions_apply(
    name: str, teachers: dict[str, Teacher], corpus: list[str], tmp_path: Path
) -> None:
    """onnxruntime's transformer fusions on each family's graph: kept only when the fused graph matches torch."""
    teacher = teachers[name]
    student = TransformerStudent.from_teacher(teacher, _targets(teacher, corpus, tmp_path / "cache"), layers=[0, 2])
    parity = export_student(student, tmp_path / "export", name="transformer", texts=TEXTS, fuse=True)
    assert parity["fp32"]["max_abs_difference"] <= 1e-4 and parity["fp32"]["traced_max_abs_difference"] <= 1e-4
    if name in ("bert", "roberta", "xlm-roberta", "distilbert", "electra"):  # the BERT attention pattern
        assert parity["fusion"]["fused"] and parity["fusion"]["ops"]["Attention"] == 2
    if parity["fusion"]["fused"]:
        assert parity["fusion"]["max_abs_difference"] <= 1e-4
    assert parity["int8"]["mean_cosine_to_fp32"] > 0.99


@pytest.mark.parametrize("name", SUPPORTED_FAMILIES)
def test_a_subset_of_layers_keeps_each_layer_as_it_was(
    name: str, teachers: dict[str, Teacher], corpus: list[str], tmp_path: Path
) -> None:
    """Layers [0, 2] of 3: the student's hidden states after each layer equal the teacher's run through those two."""
    teacher = teachers[name]
    student = TransformerStudent.from_teacher(teacher, _targets(teacher, corpus, tmp_path / "cache"), layers=[0, 2])
    assert student.encoder.config.num_hidden_layers == 2
    if name == "modernbert":  # the kept layers keep their global / local attention
        assert student.encoder.config.layer_types == [teacher.model.config.layer_types[i] for i in (0, 2)]
    reloaded = students.load(student.save(tmp_path / "student"))
    np.testing.assert_allclose(reloaded.encode(TEXTS), student.encode(TEXTS), atol=1e-5)
    source = dict(teacher.model.named_parameters())
    for key, value in student.encoder.named_parameters():
        original = key.replace(".1.", ".2.", 1) if ".1." in key else key
        torch.testing.assert_close(value, source[original], msg=key)


def test_a_student_weight_not_from_the_teacher_is_named(
    teachers: dict[str, Teacher], corpus: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ModernBERT's first layer has no attention norm: its layer 0 kept second leaves one uninitialised."""
    teacher = teachers["modernbert"]
    with caplog.at_level("WARNING"):
        TransformerStudent.from_teacher(teacher, _targets(teacher, corpus, tmp_path / "cache"), layers=[0, 0])
    assert "not initialised from the teacher" in caplog.text and "layers.1.attn_norm.weight" in caplog.text
    with pytest.raises(DistillError, match="keep layer 0 first"):
        TransformerStudent.from_teacher(teacher, _targets(teacher, corpus, tmp_path / "cache"), layers=[2])


@pytest.mark.parametrize("name", ["bert", "roberta", "mpnet", "distilbert", "electra"])
def test_narrower_students_where_the_family_allows(
    name: str, teachers: dict[str, Teacher], corpus: list[str], tmp_path: Path
) -> None:
    teacher = teachers[name]
    student = TransformerStudent.from_teacher(teacher, _targets(teacher, corpus, tmp_path / "cache"),
                                              layers=[0, 2], hidden_size=24)  # fmt: skip
    assert student.encoder.config.hidden_size == 24 and student.encode(TEXTS).shape == (len(TEXTS), 32)
    path = student.save(tmp_path / "student")
    np.testing.assert_allclose(SentenceTransformer(str(path), device="cpu").encode(TEXTS), student.encode(TEXTS),
                               atol=1e-5)  # fmt: skip


def test_unsliceable_and_unsupported_teachers_are_refused_in_one_line(
    teachers: dict[str, Teacher], corpus: list[str], tmp_path: Path
) -> None:
    teacher = teachers["modernbert"]
    targets = _targets(teacher, corpus, tmp_path / "cache")
    with pytest.raises(DistillError, match="cannot be sliced narrower"):
        TransformerStudent.from_teacher(teacher, targets, hidden_size=16)
    teacher.model.config.model_type = "gpt2"
    try:
        with pytest.raises(DistillError, match="supported families: bert, roberta"):
            TransformerStudent.check_teacher(teacher)
    finally:
        teacher.model.config.model_type = "modernbert"


def test_default_layers_follow_the_teacher_depth() -> None:
    assert default_layers(6) == [0, 5]
    assert default_layers(12) == [0, 6, 11]
    assert default_layers(24) == [0, 5, 9, 14, 18, 23]
    assert default_layers(3) == [0, 2] and default_layers(1) == [0]


@pytest.mark.parametrize("name", SUPPORTED_FAMILIES)
def test_run_eval_export_for_every_family(name: str, teachers: dict[str, Teacher], corpus: list[str],
                                          tmp_path: Path) -> None:  # fmt: skip
    """The user's commands on a teacher folder of each family: all three students, a report, parity-checked ONNX."""
    folder = save_teacher(teachers[name], tmp_path / "teacher")
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(corpus))
    (tmp_path / "run.toml").write_text(
        'students = ["static", "transformer", "tokengen"]\n[static]\nepochs = 1\n[transformer]\nepochs = 1\n'
        "[tokengen]\nepochs = 1\ngenerator-epochs = 2\nextra-words = 50\n"
    )
    run = tmp_path / "run"
    args = ["run", "--config", str(tmp_path / "run.toml"), "--teacher", str(folder), "--corpus", str(corpus_file),
            "--output", str(run), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    whole = json.loads((run / "summary.json").read_text())
    assert (whole["device"], whole["precision"]) == ("cpu", "fp32")  # --device auto on a machine without a GPU
    summary = {s["name"]: s for s in whole["students"]}
    for student in summary.values():  # the starting point competes, so training never ends below it
        assert student["valid_fidelity"] >= student["start_fidelity"]
    evaluated = CliRunner().invoke(main, ["eval", "--run", str(run), "--latency-texts", "8", "--singles", "2",
                                          "--repeats", "1", "--min-seconds", "0", "--no-baseline"])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((run / "report.json").read_text())
    assert report["teacher"]["fidelity"]["test"]["cosine_mean"] > 0.9999
    assert report["teacher"]["details"]["export"]["fp32"]["max_abs_difference"] <= 1e-4  # the teacher's own ONNX
    exported = CliRunner().invoke(main, ["export", "--run", str(run), "--check-texts", "32"])
    assert exported.exit_code == 0, exported.output
    for student in ("static", "transformer", "tokengen"):
        parity = json.loads((run / "export" / student / "parity.json").read_text())
        assert parity["fp32"]["max_abs_difference"] <= 1e-4


def test_a_prompt_reaches_targets_students_and_the_onnx_runtime(
    teachers: dict[str, Teacher], corpus: list[str], tmp_path: Path
) -> None:
    """e5-style: the teacher's own `query` prompt, chosen with --prompt, is put before every text everywhere."""
    from distill.runtime import OnnxEmbedder

    folder = save_teacher(teachers["xlm-roberta"], tmp_path / "teacher")
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "query: "}}))
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(corpus))
    run = tmp_path / "run"
    args = ["run", "--teacher", str(folder), "--prompt", "query", "--students", "static,transformer", "--epochs", "1",
            "--corpus", str(corpus_file), "--output", str(run), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads((run / "summary.json").read_text())["prompt"] == "query: "
    teacher = Teacher.load(str(folder), prompt_name="query")
    expected = teacher.sentence_vectors(TEXTS)
    assert not np.allclose(expected, Teacher.load(str(folder)).sentence_vectors(TEXTS), atol=1e-3)
    transformer = students.load(run / "students" / "transformer")
    assert transformer.token_ids(["x"])[0][:3] == teacher.tokenize(["x"])["input_ids"][0, :3].tolist()
    st = SentenceTransformer(str(run / "students" / "transformer"), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS), transformer.encode(TEXTS), atol=1e-5)  # its default prompt
    assert CliRunner().invoke(main, ["export", "--run", str(run), "--check-texts", "16"]).exit_code == 0
    for name in ("static", "transformer"):
        embedder = OnnxEmbedder(run / "export" / name)
        assert embedder.config.prompt == "query: "
        student = students.load(run / "students" / name)
        np.testing.assert_allclose(embedder.encode(TEXTS), student.encode(TEXTS), atol=1e-4)


def test_a_narrow_student_of_a_teacher_with_dense_modules_saves_every_module(
    teachers: dict[str, Teacher], corpus: list[str], tmp_path: Path
) -> None:
    """Pooling -> the projection back -> the teacher's two Dense modules -> Normalize, reloaded exactly everywhere."""
    from torch import nn

    from distill.teacher.model import Dense

    base = teachers["mpnet"]
    dense = nn.Sequential(Dense(32, 24, activation=nn.Tanh()), Dense(24, 16))
    teacher = Teacher(base.model, base.tokenizer, normalize=True, max_length=64, name="tiny-dense", dense=dense)
    student = TransformerStudent.from_teacher(teacher, _targets(teacher, corpus, tmp_path / "cache"), layers=[0, 2],
                                              hidden_size=16)  # fmt: skip
    path = student.save(tmp_path / "student")
    assert sorted(p.name for p in path.iterdir() if p.is_dir()) == [
        "1_Pooling", "2_Projection", "3_Dense", "4_Dense", "5_Normalize"
    ]  # fmt: skip
    vectors = student.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(students.load(path).encode(TEXTS), vectors, atol=1e-5)
    np.testing.assert_allclose(SentenceTransformer(str(path), device="cpu").encode(TEXTS), vectors, atol=1e-5)
