"""The teacher's own architecture with a subset of its layers: what the transformer student is made of.

The student is the teacher's model class built from the teacher's config with `num_hidden_layers`
set to the number of kept layers (and every per-layer setting, such as ModernBERT's global/local
`layer_types`, cut to the kept layers), then filled by name from the teacher's state dict: layer
`i` of the teacher becomes layer `j` of the student, everything else keeps its name. Nothing is
skipped silently: a teacher weight with no place in the student is an error, and a student weight
the teacher did not fill is named in the log.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from distill.errors import DistillError

logger = logging.getLogger(__name__)

# NOTE: families whose encoder is a list of layers and whose layer copy is tested end to end
# (tests/test_families.py); another family may work but is refused rather than risk a wrong copy.
SUPPORTED_FAMILIES = ("bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "electra", "modernbert")
# Families whose attention keeps q, k and v apart, so the first heads can be sliced off for a narrower student.
SLICEABLE_FAMILIES = frozenset(SUPPORTED_FAMILIES) - {"modernbert"}


@dataclass(frozen=True)
class Widths:
    """A narrower student's sizes; the family's own config names are filled in by `_set_widths`."""

    hidden_size: int
    heads: int
    intermediate_size: int


def family(config: PretrainedConfig) -> str:
    return str(getattr(config, "model_type", "") or type(config).__name__)


def check_choice(teacher: PreTrainedModel, layers: list[int], hidden_size: int) -> None:
    """Refuse, in one line, a teacher or a choice of layers and width that `build_encoder` cannot make."""
    config = teacher.config
    if family(config) not in SUPPORTED_FAMILIES:
        raise DistillError(
            f"the transformer student cannot be built from a {family(config)!r} teacher; supported families: "
            f"{', '.join(SUPPORTED_FAMILIES)} (the static and tokengen students work with any teacher)"
        )
    layer_list(teacher)
    bad = [i for i in layers if not 0 <= i < config.num_hidden_layers]
    if bad:
        raise DistillError(f"layer {bad[0]} is not in the teacher; it has layers 0 to {config.num_hidden_layers - 1}")
    if hidden_size > config.hidden_size:
        raise DistillError(f"hidden size {hidden_size} is wider than the teacher's ({config.hidden_size})")
    if hidden_size < config.hidden_size and family(config) not in SLICEABLE_FAMILIES:
        raise DistillError(f"a {family(config)!r} teacher cannot be sliced narrower (its attention keeps q, k and v "
                           "in one matrix); leave hidden-size at 0 to keep the teacher's width")  # fmt: skip


def default_layers(num_layers: int) -> list[int]:
    """The layers a student keeps by default: about a quarter of them, evenly spread, first and last included.

    6 layers -> [0, 5]; 12 -> [0, 6, 11]; 24 -> [0, 5, 9, 14, 18, 23].
    """
    count = min(num_layers, max(2, round(num_layers / 4)))
    return sorted({int(i) for i in np.linspace(0, num_layers - 1, count).round()})


def intermediate_size(config: PretrainedConfig) -> int:
    return int(getattr(config, "hidden_dim" if family(config) == "distilbert" else "intermediate_size"))


def layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The dotted name and module of the model's list of encoder layers (`encoder.layer`, `layers`, ...)."""
    count = model.config.num_hidden_layers
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.ModuleList) and len(module) == count
             and name.rsplit(".", 1)[-1] in ("layer", "layers")]  # fmt: skip
    if len(found) != 1:
        raise DistillError(f"cannot find the list of {count} layers in the {family(model.config)!r} teacher; "
                           f"supported families: {', '.join(SUPPORTED_FAMILIES)}")  # fmt: skip
    return found[0]


def student_config(teacher: PretrainedConfig, layers: list[int], widths: Widths | None) -> PretrainedConfig:
    """The teacher's config with the student's depth, per-layer settings and (optionally) narrower widths."""
    config = copy.deepcopy(teacher)
    count = teacher.num_hidden_layers
    for key, value in teacher.to_dict().items():
        if isinstance(value, list) and len(value) == count and key != "architectures":
            setattr(config, key, [value[i] for i in layers])  # e.g. ModernBERT's layer_types
    config.num_hidden_layers = len(layers)
    for key, value in teacher.to_dict().items():
        if "dropout" in key and isinstance(value, float):
            setattr(config, key, 0.0)  # NOTE: a regression student trains on exact targets; dropout only adds noise
    if widths is not None:
        _set_widths(config, widths)
    return config


def _set_widths(config: PretrainedConfig, widths: Widths) -> None:
    config.hidden_size = widths.hidden_size
    config.num_attention_heads = widths.heads
    setattr(config, "hidden_dim" if family(config) == "distilbert" else "intermediate_size", widths.intermediate_size)


def build_encoder(teacher: PreTrainedModel, layers: list[int], widths: Widths | None = None) -> PreTrainedModel:
    """A model of the teacher's own class with `layers` of the teacher, filled from its weights.

    With `widths`, each weight keeps its first rows and columns (the first heads, feed-forward
    units and hidden coordinates): a starting point that training repairs, not a copy.
    """
    check_choice(teacher, layers, widths.hidden_size if widths else teacher.config.hidden_size)
    prefix, _ = layer_list(teacher)
    config = student_config(teacher.config, layers, widths)
    student = type(teacher)(config)
    sources = _sources(teacher.state_dict(), prefix, layers)
    target_state = student.state_dict()
    lost = [source for target, source in sources.items() if target not in target_state]
    if lost:
        raise DistillError(
            f"the student has no place for {len(lost)} teacher weight(s), e.g. {lost[0]!r}: these layers of a "
            f"{family(config)!r} teacher cannot be kept in this order"
            + (" (ModernBERT's first layer has no attention norm: keep layer 0 first)" if family(config) == "modernbert"
               else "")
        )  # fmt: skip
    source_state = teacher.state_dict()
    with torch.no_grad():
        for target, source in sources.items():
            _copy(target_state[target], source_state[source], target, sliced=widths is not None)
    missing = sorted(set(target_state) - set(sources))
    if missing:
        logger.warning("%d student weight(s) were not initialised from the teacher: %s", len(missing),
                       ", ".join(missing))  # fmt: skip
    return student.eval()


def _sources(state: dict[str, torch.Tensor], prefix: str, layers: list[int]) -> dict[str, str]:
    """Student weight name -> the teacher weight it is copied from."""
    out: dict[str, str] = {}
    start = prefix + "."
    for name in state:
        if not name.startswith(start):
            out[name] = name
            continue
        index, rest = name[len(start) :].split(".", 1)
        for position, kept in enumerate(layers):
            if kept == int(index):
                out[f"{start}{position}.{rest}"] = name
    return out


def _copy(target: torch.Tensor, source: torch.Tensor, name: str, *, sliced: bool) -> None:
    if target.shape == source.shape:
        target.copy_(source)
    elif sliced and target.dim() == source.dim() and all(map(int.__le__, target.shape, source.shape)):
        target.copy_(source[tuple(slice(0, n) for n in target.shape)])
    else:
        raise DistillError(f"the teacher's {name!r} has shape {tuple(source.shape)}, the student's "
                           f"{tuple(target.shape)}: this teacher's settings are not understood")  # fmt: skip
