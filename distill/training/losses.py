"""Regression losses: `(student, teacher) -> scalar`, both (..., dim) vectors for the same texts."""

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


class WeightedSum(nn.Module):
    """A weighted sum of losses on the same pair of inputs."""

    def __init__(self, losses: list[tuple[float, nn.Module]]) -> None:
        super().__init__()
        self.weights = [w for w, _ in losses]
        self.losses = nn.ModuleList([loss for _, loss in losses])

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(student, teacher) for w, loss in zip(self.weights, self.losses, strict=True))


def make_loss(kind: LossKind | str) -> nn.Module:
    kind = LossKind(kind)
    if kind is LossKind.COSINE:
        return CosineLoss()
    if kind is LossKind.MSE:
        return MSELoss()
    return WeightedSum([(1.0, CosineLoss()), (1.0, MSELoss())])
