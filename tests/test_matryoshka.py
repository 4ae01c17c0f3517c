"""Matryoshka training: the sentence loss also on the vectors shortened in the teacher's basis, from the flag to
the summary."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from distill.cli.commands import main
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.runtime.vectors import Basis
from distill.teacher.model import Teacher
from distill.training.config import RunConfig, build_config
from distill.training.losses import CosineLoss, MatryoshkaLoss
from distill.training.pipeline import run_from_model
from distill.training.trainer import TrainConfig, Trainer
from students.transformer import TransformerStudent
from tests.conftest import far_off_transformer_student


def _loss_and_teacher(dim: int = 16, n: int = 12) -> tuple[MatryoshkaLoss, torch.Tensor, Basis]:
    torch.manual_seed(0)
    teacher = torch.randn(n, dim) * torch.linspace(3, 0.1, dim)  # variance falling along the axes
    basis = Basis.fit(teacher.numpy())
    loss = MatryoshkaLoss(CosineLoss(), torch.from_numpy(basis.mean), torch.from_numpy(basis.directions), [8, 4])
    return loss, teacher, basis


def test_the_loss_is_zero_on_the_teacher_and_positive_off_it_with_gradients() -> None:
    loss, teacher, _ = _loss_and_teacher()
    assert loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-5)
    student = (teacher + 0.5 * torch.randn_like(teacher)).requires_grad_(True)
    value = loss(student, teacher)
    value.backward()
    assert value.item() > 1e-3
    assert student.grad is not None and student.grad.abs().sum().item() > 0


def test_the_prefix_terms_read_the_leading_directions_only() -> None:
    """An error along the last direction leaves every prefix as the teacher's: only the full-vector term sees it;
    the same error along the first direction costs every prefix too, so it costs more."""
    loss, teacher, basis = _loss_and_teacher()
    last, first = (torch.from_numpy(basis.directions[i]) for i in (-1, 0))
    full = CosineLoss()(teacher + 0.5 * last, teacher).item()
    assert full > 1e-4
    assert loss(teacher + 0.5 * last, teacher).item() == pytest.approx(full, rel=1e-4)
    assert loss(teacher + 0.5 * first, teacher).item() > 2 * CosineLoss()(teacher + 0.5 * first, teacher).item()


def test_the_weight_scales_each_prefix_term() -> None:
    loss, teacher, basis = _loss_and_teacher()
    student = teacher + torch.randn_like(teacher)
    heavy = MatryoshkaLoss(CosineLoss(), torch.from_numpy(basis.mean), torch.from_numpy(basis.directions), [8, 4],
                           weight=3.0)  # fmt: skip
    base = CosineLoss()(student, teacher).item()
    assert heavy(student, teacher).item() - base == pytest.approx(3 * (loss(student, teacher).item() - base), rel=1e-4)


def test_dims_are_read_from_a_flag_or_a_list() -> None:
    assert TrainConfig(matryoshka="8, 4,8").matryoshka == [8, 4]
    assert TrainConfig(matryoshka=[4, 16]).matryoshka == [16, 4]
    assert TrainConfig().matryoshka == []
    config = build_config({"matryoshka": [64, 32]}, {"matryoshka_weight": 2.0})
    assert config.train_config_for("static", {}).matryoshka == [64, 32]
    assert config.train_config_for("static", {}).matryoshka_weight == 2.0


@pytest.mark.parametrize("bad", [{"matryoshka": "0,4"}, {"matryoshka": "eight"}, {"matryoshka_weight": -1.0}])
def test_bad_settings_are_user_errors(bad: dict) -> None:
    with pytest.raises(DistillError, match="matryoshka"):
        TrainConfig(**bad)


def test_a_bad_flag_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", "--output", str(tmp_path / "run"), "--matryoshka", "128,-4"])
    assert result.exit_code == 2 and "matryoshka" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_dims_of_the_teacher_or_more_are_refused(tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path) -> None:
    student = TransformerStudent.from_teacher(tiny_teacher, tiny_targets, layers=[1])
    with pytest.raises(DistillError, match=f"between 1 and {tiny_targets.dim - 1}"):
        Trainer(student, tiny_targets, TrainConfig(matryoshka=[tiny_targets.dim]), tmp_path)


def test_a_transformer_student_trains_with_prefixes(
    tiny_teacher: Teacher, tiny_targets: Targets, tmp_path: Path
) -> None:
    student = far_off_transformer_student(tiny_teacher, tiny_targets)
    config = TrainConfig(**{**TransformerStudent.default_training, "epochs": 3, "lr": 3e-3, "matryoshka": [8, 4]})
    result = Trainer(student, tiny_targets, config, tmp_path).train()
    assert result.start_fidelity < 0.95 and result.best_fidelity > result.start_fidelity + 0.02


def test_a_tiny_run_trains_and_records_its_dims(tiny_teacher: Teacher, corpus: list[str], tmp_path: Path) -> None:
    config = RunConfig(output=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                       train={"epochs": 2, "matryoshka": "8,4"})  # fmt: skip
    (static,) = run_from_model(tiny_teacher, corpus, config).students
    assert static.matryoshka == [8, 4] and np.isfinite(static.valid_fidelity)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["students"][0]["matryoshka"] == [8, 4]
