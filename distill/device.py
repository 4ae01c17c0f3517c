"""Where torch work runs and in what precision: `--device` and `--precision`, resolved once at the boundary.

A `Placement` is a device and a precision. The teacher's forward pass and training run under
`placement.autocast()`; everything handed back to the rest of the toolkit (target vectors,
encoded texts, losses) is float32 on the CPU or on the placement's device as documented.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from enum import Enum

import torch

from distill.errors import DistillError

DEVICES = ("auto", "cpu", "cuda", "mps")


class Precision(str, Enum):
    FP32 = "fp32"
    BF16 = "bf16"  # autocast to bfloat16: the range of fp32, no loss scaling
    FP16 = "fp16"  # autocast to float16, with a gradient scaler in training

    @property
    def dtype(self) -> torch.dtype:
        return {Precision.FP32: torch.float32, Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}[self]


@dataclass(frozen=True)
class Placement:
    device: torch.device
    precision: Precision = Precision.FP32

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "fp32") -> Placement:
        """A placement from the flags' values; a device this machine lacks is a user's error."""
        try:
            precision = Precision(precision)
        except ValueError as e:
            raise DistillError(f"precision must be one of {', '.join(p.value for p in Precision)}, "
                               f"not {precision!r}") from e  # fmt: skip
        return cls(resolve_device(device), precision)

    @classmethod
    def cpu(cls) -> Placement:
        return cls(torch.device("cpu"))

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the block (nothing for fp32)."""
        if self.precision is Precision.FP32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.precision.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 training (a pass-through otherwise)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision is Precision.FP16)

    def __str__(self) -> str:
        return f"{self.device.type} {self.precision.value}"


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else the CPU; `cuda` / `mps` must be present."""
    if name not in DEVICES:
        raise DistillError(f"device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DistillError("--device cuda: no CUDA device here (or torch is the CPU build); use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DistillError("--device mps: no Apple GPU here; use --device cpu or auto")
    return torch.device(name)
