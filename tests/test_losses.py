"""The sentence losses: each vector against its target, and the batch's similarity structure and ranking."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from distill.data.corpus import assign_splits
from distill.data.targets import Targets, build_targets
from distill.errors import DistillError
from distill.teacher.model import Teacher
from distill.training.losses import CosineLoss, RankLoss, SimilarityLoss, WeightedSum, make_sentence_loss
from distill.training.trainer import TrainConfig, Trainer
from students.static import StaticStudent


@pytest.fixture()
def targets(tiny_teacher: Teacher, corpus: list[str], tmp_path: Path) -> Targets:
    return build_targets(tiny_teacher, corpus, assign_splits(corpus, 0.2, 0.2), tmp_path / "cache")


def _batch(n: int = 12, dim: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    teacher = torch.randn(n, dim)
    return teacher + 0.5 * torch.randn(n, dim), teacher


def test_each_in_batch_loss_is_zero_on_the_teacher_and_positive_off_it() -> None:
    student, teacher = _batch()
    for loss in (SimilarityLoss(), SimilarityLoss(against_teacher=True), RankLoss()):
        assert loss(teacher * 3.0, teacher).item() == pytest.approx(0.0, abs=1e-5)  # scale is not the point
        assert loss(student, teacher).item() > 1e-3


def test_the_index_loss_sees_what_the_symmetric_one_cannot() -> None:
    """A rotation keeps every cosine between student vectors (the symmetric loss is blind to it) but moves the
    student's queries away from the teacher's documents, which a query encoder for the teacher's index needs."""
    _, teacher = _batch()
    rotation, _ = torch.linalg.qr(torch.randn(16, 16))
    rotated = teacher @ rotation
    assert SimilarityLoss()(rotated, teacher).item() == pytest.approx(0.0, abs=1e-5)
    assert SimilarityLoss(against_teacher=True)(rotated, teacher).item() > 1e-2


def test_the_rank_loss_reads_the_order_not_the_cosines() -> None:
    """Cosines to the others all shifted alike keep the softmax: the rank loss stays where it was."""
    student, teacher = _batch()
    loss = RankLoss(temperature=0.1)
    assert loss(student, teacher).item() > 0
    two = torch.randn(2, 16)
    assert loss(two, two.flip(0)).item() == 0.0  # one other text has no order to learn


def test_each_in_batch_loss_lowers_by_gradient_descent() -> None:
    student, teacher = _batch()
    for loss in (SimilarityLoss(), SimilarityLoss(against_teacher=True), RankLoss()):
        weights = student.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([weights], lr=0.05)
        first = loss(weights, teacher).item()
        for _ in range(100):
            optimizer.zero_grad()
            loss(weights, teacher).backward()
            optimizer.step()
        assert loss(weights, teacher).item() < 0.5 * first


def test_sentence_loss_adds_only_the_weighted_terms() -> None:
    assert isinstance(make_sentence_loss("cosine"), CosineLoss)
    loss = make_sentence_loss("cosine", similarity_weight=2.0, rank_weight=0.5)
    assert isinstance(loss, WeightedSum) and loss.weights == [1.0, 2.0, 0.5]
    student, teacher = _batch()
    expected = (
        CosineLoss()(student, teacher) + 2 * SimilarityLoss()(student, teacher) + 0.5 * RankLoss()(student, teacher)
    )
    assert loss(student, teacher).item() == pytest.approx(expected.item(), rel=1e-6)
    cosine = (1 - F.cosine_similarity(student, teacher)).mean()
    assert make_sentence_loss("cosine")(student, teacher).item() == pytest.approx(cosine.item(), rel=1e-6)


@pytest.mark.parametrize("bad", [{"similarity_weight": -1.0}, {"rank_weight": -0.1}, {"rank_temperature": 0.0}])
def test_bad_loss_settings_are_user_errors(bad: dict) -> None:
    with pytest.raises(DistillError):
        TrainConfig(**bad)


def test_a_student_trains_with_every_in_batch_term(tiny_teacher: Teacher, targets: Targets, tmp_path: Path) -> None:
    student = StaticStudent.from_teacher(tiny_teacher, targets, init="vocab")
    config = TrainConfig(epochs=3, lr=2e-2, batch_size=32, patience=3, similarity_weight=1.0, index_weight=1.0,
                         rank_weight=0.1)  # fmt: skip
    result = Trainer(student, targets, config, tmp_path).train()
    assert result.best_epoch > 0 and result.best_fidelity > result.start_fidelity + 0.01
