"""--device and --precision on the CPU (CI has no GPU): mixed precision teacher and training, clear errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from distill.cli.commands import main
from distill.data.corpus import assign_splits, fingerprint
from distill.data.targets import build_targets, cache_key
from distill.device import Placement, Precision
from distill.errors import DistillError
from distill.teacher.model import Teacher
from distill.training.trainer import TrainConfig, Trainer
from students.static import StaticStudent
from students.transformer import TransformerStudent
from tests.conftest import SENTENCES
from tests.families import tiny_teacher


@pytest.fixture()
def teacher(corpus: list[str]) -> Teacher:
    return tiny_teacher("bert", corpus)


def test_auto_is_cuda_when_present_and_a_missing_device_is_a_user_error() -> None:
    assert Placement.resolve("auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert Placement.resolve("cpu", "bf16").precision is Precision.BF16
    with pytest.raises(DistillError, match="precision must be one of fp32, bf16, fp16"):
        Placement.resolve("cpu", "int4")
    if not torch.cuda.is_available():
        with pytest.raises(DistillError, match="no CUDA device"):
            Placement.resolve("cuda")


def test_bf16_teacher_gives_close_vectors_under_its_own_cache_key(teacher: Teacher, corpus: list[str]) -> None:
    split, corpus_fingerprint = assign_splits(corpus), fingerprint(corpus)
    fp32_vectors, fp32_key = teacher.sentence_vectors(SENTENCES), cache_key(teacher, corpus_fingerprint, split, True)
    teacher.place(Placement.resolve("cpu", "fp32"))
    assert cache_key(teacher, corpus_fingerprint, split, True) == fp32_key  # placing on the CPU in fp32 changes nothing
    teacher.place(Placement.resolve("cpu", "bf16"))
    bf16_vectors = teacher.sentence_vectors(SENTENCES)
    assert bf16_vectors.dtype == np.float32 and not np.array_equal(bf16_vectors, fp32_vectors)
    assert (bf16_vectors * fp32_vectors).sum(axis=1).min() > 0.99
    assert cache_key(teacher, corpus_fingerprint, split, True) != fp32_key


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_moves_towards_the_teacher(
    teacher: Teacher, corpus: list[str], tmp_path: Path, precision: str
) -> None:
    targets = build_targets(teacher, corpus, assign_splits(corpus), tmp_path / "cache")
    placement = Placement.resolve("cpu", precision)
    static = StaticStudent.from_teacher(teacher, targets, init="vocab")
    result = Trainer(static, targets, TrainConfig(epochs=3, lr=2e-2, batch_size=32, patience=3), tmp_path / "s",
                     placement).train()  # fmt: skip
    assert result.best_fidelity > result.start_fidelity + 0.01
    transformer = TransformerStudent.from_teacher(teacher, targets, layers=[2])
    config = TrainConfig(**{**TransformerStudent.default_training, "epochs": 1})
    result = Trainer(transformer, targets, config, tmp_path / "t", placement).train()
    assert np.isfinite(result.best_fidelity) and result.best_fidelity >= result.start_fidelity


def test_run_shows_the_flags_and_refuses_a_missing_gpu_in_one_line(tmp_path: Path, corpus: list[str]) -> None:
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(corpus))
    help_text = CliRunner().invoke(main, ["run", "--help"]).output
    assert "--device" in help_text and "--precision" in help_text
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(main, ["run", "--device", "cuda", "--corpus", str(corpus_file),
                                       "--output", str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 2 and "no CUDA device" in result.output
