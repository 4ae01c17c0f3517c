"""Regression losses: `(student, teacher) -> scalar`, both (batch, dim) vectors for the same texts.

Beside each vector against its target (cosine, MSE), three losses compare what a batch's vectors
say about one another, which is what retrieval reads: the in-batch cosine matrix (student against
student, or the student's vectors against the teacher's as a query encoder for a teacher's index
sees them) against the teacher's own, and the ranking each text gives the others. They follow
the similarity and relative-similarity losses of the Jasper/Stella distillation recipe
(arXiv:2412.19048), with a listwise ranking term in place of its pairwise margin.

`MatryoshkaLoss` adds the same loss on the vectors shortened to their first k coordinates in the teacher's basis
(Matryoshka representation learning, arXiv:2205.13147), so shorter vectors keep their quality.
"""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn


class LossKind(str, Enum):
    COSINE = "cosine"
    MSE = "mse"
    COSINE_MSE = "cosine+mse"


class CosineLoss(nn.Module):
    """Mean of (1 - cosine) between student and teacher vectors: direction only, scale ignored."""

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()


class MSELoss(nn.Module):
    """Mean squared error between L2-normalised student and teacher vectors, summed over dimensions.

    NOTE: on unit vectors this is 2 * (1 - cosine) per pair; it is kept for teachers whose vectors
    are compared unnormalised by their users, where `normalize=False` keeps the scale.
    """

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            student, teacher = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
        return (student - teacher).pow(2).sum(dim=-1).mean()


class SimilarityLoss(nn.Module):
    """Mean squared difference between the batch's cosine matrix and the teacher's, (batch, batch) each.

    `against_teacher=False`: the student's texts against each other (a symmetric index, STS).
    `against_teacher=True`: the student's texts against the teacher's vectors of the same texts,
    student(q) . teacher(d) against teacher(q) . teacher(d): the student as the query encoder
    of an index the teacher built. Its diagonal is the cosine loss, squared.
    """

    def __init__(self, against_teacher: bool = False) -> None:
        super().__init__()
        self.against_teacher = against_teacher

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student, teacher = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
        target = teacher @ teacher.T  # (batch, batch)
        mine = student @ (teacher if self.against_teacher else student).T
        return (mine - target).pow(2).mean()


class RankLoss(nn.Module):
    """How each text ranks the batch's other texts: KL(teacher || student) of softmax(cosine / temperature) rows.

    The student's row is its vector against the teacher's vectors of the other texts (the ranking a
    query of the student gets from a teacher's index, and, as the student learns the teacher's space,
    from its own); a text's own column is left out, so only the order of the others counts.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if len(student) < 3:
            return student.sum() * 0.0  # NOTE: one other text has no order; keeps the graph for DDP
        student, teacher = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
        others = ~torch.eye(len(student), dtype=torch.bool, device=student.device)
        rows = len(student)
        target = (teacher @ teacher.T)[others].view(rows, rows - 1) / self.temperature  # (batch, batch - 1)
        mine = (student @ teacher.T)[others].view(rows, rows - 1) / self.temperature
        return F.kl_div(F.log_softmax(mine, dim=-1), F.log_softmax(target, dim=-1), log_target=True,
                        reduction="batchmean")  # fmt: skip


class WeightedSum(nn.Module):
    """A weighted sum of losses on the same pair of inputs."""

    def __init__(self, losses: list[tuple[float, nn.Module]]) -> None:
        super().__init__()
        self.weights = [w for w, _ in losses]
        self.losses = nn.ModuleList([loss for _, loss in losses])

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(student, teacher) for w, loss in zip(self.weights, self.losses, strict=True))


class MatryoshkaLoss(nn.Module):
    """`base` on the full vectors plus `weight` x `base` on each prefix: student and teacher (batch, dim) both
    shortened to their first k coordinates in the teacher's basis, unit((v - mean) @ directions[:k].T), k in `dims`.

    `mean` (dim,) and `directions` (dim, dim) are the teacher's `Basis` (`distill.data.basis.teacher_basis`), so the
    full vector stays in the teacher's own axes and a shortened one compares with the teacher's shortened alike.
    NOTE: `base` runs on each prefix whole, in-batch terms included: a prefix's neighbours are what a shortened
    index returns, so they are kept as the full vector's are.
    """

    def __init__(self, base: nn.Module, mean: torch.Tensor, directions: torch.Tensor, dims: list[int],
                 weight: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        self.base, self.dims, self.weight = base, sorted(dims, reverse=True), weight
        self.register_buffer("mean", mean.float())  # (dim,)
        self.register_buffer("directions", directions[: max(dims)].float())  # (max k, dim)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        loss = self.base(student, teacher)
        student_coords = (student - self.mean) @ self.directions.T  # (batch, max k)
        teacher_coords = (teacher - self.mean) @ self.directions.T
        for k in self.dims:
            loss = loss + self.weight * self.base(student_coords[:, :k], teacher_coords[:, :k])
        return loss


def make_loss(kind: LossKind | str) -> nn.Module:
    """The loss of each vector against its own target."""
    kind = LossKind(kind)
    if kind is LossKind.COSINE:
        return CosineLoss()
    if kind is LossKind.MSE:
        return MSELoss()
    return WeightedSum([(1.0, CosineLoss()), (1.0, MSELoss())])


def make_sentence_loss(
    kind: LossKind | str,
    similarity_weight: float = 0.0,
    index_weight: float = 0.0,
    rank_weight: float = 0.0,
    rank_temperature: float = 0.05,
) -> nn.Module:
    """The loss of a batch's sentence vectors: `kind` on each vector, plus the weighted in-batch terms."""
    base = make_loss(kind)
    extra = [(similarity_weight, SimilarityLoss()), (index_weight, SimilarityLoss(against_teacher=True)),
             (rank_weight, RankLoss(rank_temperature))]  # fmt: skip
    extra = [(w, loss) for w, loss in extra if w > 0]
    return WeightedSum([(1.0, base), *extra]) if extra else base
