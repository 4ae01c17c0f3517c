"""The compressed static student: its schemes against the static student they came from, save / load, ONNX parity
through the exporter, and `distill compress` on a tiny run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from transformers import BertTokenizerFast

import students
from distill.cli.commands import main
from distill.errors import DistillError
from distill.export.exporter import export_student
from distill.runfolder import read_summary, write_summary
from distill.runtime import OnnxEmbedder
from distill.teacher.model import Teacher
from distill.training.config import RunConfig
from distill.training.pipeline import run_from_model
from students.static import StaticConfig, StaticStudent
from students.static_compressed import CompressedStaticConfig, CompressedStaticStudent, pack_int4, unpack_int4
from tests.conftest import SENTENCES

TEXTS = [*SENTENCES, "", "a", "the the the the", "Rain and stock markets in the old town."]
# The least cosine to the uncompressed student's vectors over TEXTS, on a random (vocab, 16) Gaussian table (no
# structure for pq to find). Measured over table seeds 0-2: int8 0.99998, int4 0.989-0.993, pq (4 parts of 4)
# 0.90-0.92; each bound leaves room below that. The default run's table on 2,000 passages: int8 0.99997, int4
# 0.991, pq-48 (unweighted) 0.61: its error is 56% of a row's length (measured on the first 64 dims, as the trial's).
LEAST_COSINE = {"int8": 0.9995, "int4": 0.98, "pq": 0.85}
PARTS = 4


@pytest.fixture(scope="module")
def static(tokenizer: BertTokenizerFast) -> StaticStudent:
    config = StaticConfig(dim=16, vocab_size=tokenizer.vocab_size, max_length=32, teacher="tiny", factored=False,
                          specials=True)  # fmt: skip
    student = StaticStudent(config, tokenizer.backend_tokenizer)
    student.init_table(np.random.default_rng(0).standard_normal((tokenizer.vocab_size, 16)))
    return student.eval()


@pytest.fixture(scope="module", params=["int8", "int4", "pq"])
def compressed(request: pytest.FixtureRequest, static: StaticStudent) -> CompressedStaticStudent:
    return CompressedStaticStudent.from_static(static, request.param, parts=PARTS)


def test_each_scheme_stays_close_to_the_static_student(static: StaticStudent, compressed: CompressedStaticStudent):
    full, small = static.encode(TEXTS), compressed.encode(TEXTS)
    cosines = (full * small).sum(axis=1)
    assert cosines.min() > LEAST_COSINE[compressed.config.scheme], cosines.min()
    assert np.allclose(np.linalg.norm(small, axis=1), 1.0, atol=1e-5)
    # the rows it decodes are the table it stands for, and its forward reads only those
    ids = torch.tensor([[101, 2023, 102]])
    assert torch.equal(compressed.rows(ids)[0], compressed.table()[ids[0]])


def test_save_and_load_give_identical_vectors_and_store_only_the_codes(compressed, tmp_path: Path) -> None:
    path = compressed.save(tmp_path / "student")
    loaded = students.load(path)
    assert isinstance(loaded, CompressedStaticStudent) and loaded.config == compressed.config
    np.testing.assert_array_equal(loaded.encode(TEXTS), compressed.encode(TEXTS))
    vocab, dim = compressed.config.vocab_size, compressed.config.dim
    weights = (path / "model.safetensors").stat().st_size
    code_bytes = {"int8": vocab * dim, "int4": vocab * dim // 2, "pq": vocab * PARTS}[compressed.config.scheme]
    assert code_bytes <= weights < code_bytes + vocab * 4 + 8192  # codes, a scale a row or the codebooks, a header
    assert not (path / "tokenizer.json").exists() and (path / "tokenizer.json.xz").is_file()


def test_tuned_values_are_saved_as_stored(static: StaticStudent, tmp_path: Path) -> None:
    """Scales in fp16 and codebooks moved by training round to what is saved, so the loaded student is the same."""
    student = CompressedStaticStudent.from_static(static, "int4", scale_dtype="float16")
    with torch.no_grad():
        student.scales.mul_(1.0001)  # as an optimizer step would
    student.finalize()
    loaded = students.load(student.save(tmp_path / "s"))
    np.testing.assert_array_equal(loaded.encode(TEXTS), student.encode(TEXTS))


def test_int4_packing_round_trips() -> None:
    codes = np.random.default_rng(1).integers(-7, 8, size=(5, 8)).astype(np.int8)
    assert np.array_equal(unpack_int4(torch.from_numpy(pack_int4(codes))).numpy(), codes)


def test_onnx_export_matches_the_torch_student(compressed: CompressedStaticStudent, tmp_path: Path) -> None:
    """The exporter's own parity check passes (fp32 graph to 1e-4 of torch, both graphs batch-independent), and
    both graphs, decoding the codes, give the torch student's vectors."""
    parity = export_student(compressed, tmp_path / "export", name="c", texts=TEXTS)
    expected = compressed.encode(TEXTS)
    for precision in ("fp32", "int8"):
        vectors = OnnxEmbedder(tmp_path / "export", precision=precision, threads=1).encode(TEXTS)
        assert np.abs(vectors - expected).max() < 1e-5, precision
    assert parity["int8"]["min_cosine_to_fp32"] > 0.99999
    # the graphs hold the codes, not a float table: a float table alone would be vocab * dim * 4 bytes
    assert parity["bytes"]["int8"] < compressed.config.vocab_size * compressed.config.dim * 4 / 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"scheme": "int3"}, "scheme must be"), ({"scheme": "pq", "parts": 5}, "parts must divide"),
     ({"scheme": "int8", "scale_dtype": "bfloat16"}, "scale_dtype")],
)  # fmt: skip
def test_bad_settings_are_one_line(fields: dict, message: str) -> None:
    with pytest.raises(DistillError, match=message):
        CompressedStaticConfig(dim=16, vocab_size=100, **fields)


def test_it_is_not_trained_from_a_teacher(tiny_teacher: Teacher) -> None:
    with pytest.raises(DistillError, match="distill compress"):
        CompressedStaticStudent.check_teacher(tiny_teacher)


@pytest.fixture(scope="module")
def tiny_run(tiny_teacher: Teacher, corpus: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the tiny teacher (32 wide) with a static student trained one epoch."""
    root = tmp_path_factory.mktemp("run")
    config = RunConfig(output=str(root / "run"), cache_dir=str(root / "cache"), train={"epochs": 1})
    return Path(run_from_model(tiny_teacher, corpus, config).run_dir)


def _compress(run: Path, *flags: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["compress", "--run", str(run), *flags])
    return result.exit_code, result.output


def test_the_command_adds_a_student_the_run_and_its_loaders_read(tiny_run: Path) -> None:
    code, output = _compress(tiny_run, "--scheme", "pq", "--parts", "4", "--weighting", "sqrt", "--tune-epochs", "1")
    assert code == 0, output
    summary = read_summary(tiny_run)
    entry = next(s for s in summary["students"] if s["name"] == "static-pq4")
    recorded = json.loads((tiny_run / "summary.json").read_text())["students"][-1]
    assert recorded["path"] == "students/static-pq4"  # relative, as the run's other students
    student = students.load(entry["path"])
    assert isinstance(student, CompressedStaticStudent) and student.config.parts == 4
    assert entry["test_fidelity"] > 0 and entry["epochs"] == 1 and entry["bytes"] < 1_000_000
    static = students.load(next(s["path"] for s in summary["students"] if s["name"] == "static"))
    assert (static.encode(SENTENCES) * student.encode(SENTENCES)).sum(axis=1).min() > 0.8
    # a compressed student as the source is tuned further, its codes kept
    code, output = _compress(tiny_run, "--source", "static-pq4", "--name", "more", "--tune-epochs", "1")
    assert code == 0, output
    more = students.load(tiny_run / "students" / "more")
    assert torch.equal(more.codes, student.codes) and {"static-pq4", "more"} <= set(names(tiny_run))


def names(run: Path) -> list[str]:
    return [s["name"] for s in read_summary(run)["students"]]


def test_the_command_refuses_in_one_line(tiny_run: Path, tmp_path: Path) -> None:
    assert _compress(tiny_run, "--scheme", "int8", "--name", "again")[0] == 0
    code, output = _compress(tiny_run, "--scheme", "int8", "--name", "again")
    assert code == 2 and "already holds a student 'again'" in output and "--overwrite" in output
    assert _compress(tiny_run, "--scheme", "int8", "--name", "again", "--overwrite")[0] == 0
    code, output = _compress(tiny_run, "--scheme", "pq", "--parts", "5")
    assert code == 2 and "parts must divide the dimension 32" in output
    code, output = _compress(tiny_run, "--scheme", "int3")
    assert code == 2 and "int3" in output
    bare = tmp_path / "bare"
    shutil.copytree(tiny_run, bare)
    write_summary(bare, {**read_summary(bare), "students": []})
    code, output = _compress(bare)
    assert code == 2 and "no static student" in output
    assert all("Traceback" not in line for line in output.splitlines())
