"""A student's training checkpoint: what `--resume` goes on from, one file in its training folder.

After every epoch it holds the run's figures, the weights as they are and the best weights so far, and the
optimizer's, scheduler's and gradient scaler's states. Once training ends it is replaced by the weights the
student ended with and the figures alone, so a finished student's folder stays about as small as the student
and a resumed run keeps the student as it is.

Weights are kept as the tensors training changes (the parameters the optimizer updates). NOTE: the rest
(buffers such as the static table's base, weights left frozen such as a transformer's word table, or the
static table while its factors train) stays as `from_teacher` built it, and a resumed run builds it again
alike. Keeping it all, twice, beside the optimizer's moments made a 46 MB static student's checkpoint 378 MB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.errors import DistillError
from distill.io import save_with

CHECKPOINT_FILE = "checkpoint.pt"
Weights = dict[str, torch.Tensor]


class Checkpoint:
    """The checkpoint of `student` trained by `optimizer` (with its `scheduler` and gradient `scaler`) at `path`."""

    def __init__(self, path: Path, student: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 scaler: Any) -> None:  # fmt: skip
        self.path, self.student, self.optimizer = Path(path), student, optimizer
        self.scheduler, self.scaler = scheduler, scaler

    def trained_names(self) -> list[str]:
        """The names of the student's tensors that training changes: the parameters the optimizer updates."""
        updated = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        return [name for name, p in self.student.named_parameters() if id(p) in updated]

    def weights(self) -> Weights:
        """A copy of the trained tensors as they are now."""
        state = self.student.state_dict()
        return {name: state[name].detach().clone() for name in self.trained_names()}

    def load_weights(self, weights: Weights) -> None:
        """Load trained tensors (or a whole state dict, as checkpoints of earlier versions hold) into the student."""
        missing, unexpected = self.student.load_state_dict(weights, strict=False)
        if unexpected or set(missing) & set(self.trained_names()):
            raise DistillError(f"{self.path} holds another student's weights; train it again without --resume")

    def save(self, state: dict[str, Any], config: dict[str, Any]) -> None:
        """After an epoch: `state` (the figures and the best weights) and all that goes on from here."""
        checkpoint = {**state, "student": self.weights(), "optimizer": self.optimizer.state_dict(),
                      "scaler": self.scaler.state_dict(), "scheduler": self.scheduler.state_dict(),
                      "config": config}  # fmt: skip
        save_with(self.path, lambda tmp: torch.save(checkpoint, tmp))

    def save_finished(self, state: dict[str, Any], config: dict[str, Any]) -> None:
        """Once training ends: the weights the student ended with and the figures, marked finished; `state` is
        marked so too."""
        state.update(finished=True, best_state=None)
        checkpoint = {**state, "student": self.weights(), "config": config}
        save_with(self.path, lambda tmp: torch.save(checkpoint, tmp))

    def load(self, device: torch.device) -> dict[str, Any]:
        """Load the checkpoint's weights (and, unless finished, the optimizer's states); the run's state."""
        checkpoint = torch.load(self.path, weights_only=False, map_location=device)
        self.load_weights(checkpoint.pop("student"))
        checkpoint.pop("config")
        if checkpoint.get("finished"):
            return checkpoint
        self.optimizer.load_state_dict(checkpoint.pop("optimizer"))
        scaler = checkpoint.pop("scaler", None)
        if scaler:
            self.scaler.load_state_dict(scaler)
        self.scheduler.load_state_dict(checkpoint.pop("scheduler"))
        return checkpoint
