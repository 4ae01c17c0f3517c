"""sentence-transformers' modules after the encoder (Pooling, Dense, Normalize) and the folder that lists them.

`pool` and `Dense` compute what sentence-transformers computes, on plain tensors (so students
reuse them and they trace into ONNX); `read_teacher_files` reads a sentence-transformers folder
(modules.json, the modules' configs, the prompts) and refuses, in one line, anything that
distill would not reproduce exactly.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from distill.errors import DistillError
from distill.io import read_json, save_with, write_json

logger = logging.getLogger(__name__)

UNDERSTOOD_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
# The Transformer module's config file, under each name sentence-transformers has used.
_TRANSFORMER_CONFIGS = tuple(
    f"sentence_{name}_config.json"
    for name in ("bert", "roberta", "distilbert", "camembert", "albert", "xlm-roberta", "xlnet")
)


class Pooling(str, Enum):
    MEAN = "mean"
    CLS = "cls"
    MAX = "max"
    LASTTOKEN = "lasttoken"
    WEIGHTEDMEAN = "weightedmean"
    MEAN_SQRT_LEN = "mean_sqrt_len"


# sentence-transformers' legacy bool keys, in its order, and its `pooling_mode` names, for our modes.
_LEGACY_KEYS = {
    "pooling_mode_cls_token": Pooling.CLS,
    "pooling_mode_max_tokens": Pooling.MAX,
    "pooling_mode_mean_tokens": Pooling.MEAN,
    "pooling_mode_mean_sqrt_len_tokens": Pooling.MEAN_SQRT_LEN,
    "pooling_mode_weightedmean_tokens": Pooling.WEIGHTEDMEAN,
    "pooling_mode_lasttoken": Pooling.LASTTOKEN,
}
_ST_MODES = {
    "cls": Pooling.CLS,
    "max": Pooling.MAX,
    "mean": Pooling.MEAN,
    "mean_sqrt_len_tokens": Pooling.MEAN_SQRT_LEN,
    "weightedmean": Pooling.WEIGHTEDMEAN,
    "lasttoken": Pooling.LASTTOKEN,
}


def pool(token_vectors: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """(batch, seq, dim) -> (batch, dim) over the positions the mask keeps, as sentence-transformers pools.

    Exact for right-padded batches; no Python branch depends on tensor values, so it traces into ONNX.
    """
    mask = attention_mask.unsqueeze(-1).to(token_vectors.dtype)  # (batch, seq, 1)
    if pooling is Pooling.CLS:
        return token_vectors[:, 0]
    if pooling is Pooling.MAX:
        return token_vectors.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    if pooling is Pooling.LASTTOKEN:
        last = (attention_mask.sum(dim=1) - 1).clamp(min=0)  # (batch,); an empty row gathers a zeroed vector
        index = last.view(-1, 1, 1).expand(-1, 1, token_vectors.shape[-1])  # (batch, 1, dim)
        return (token_vectors * mask).gather(1, index).squeeze(1)
    if pooling is Pooling.WEIGHTEDMEAN:
        mask = mask * mask.cumsum(dim=1)  # weights 1, 2, 3, ... from the first kept position
    total = (token_vectors * mask).sum(dim=1)  # (batch, dim)
    count = mask.sum(dim=1).clamp(min=1e-9)  # (batch, 1)
    return total / (count.sqrt() if pooling is Pooling.MEAN_SQRT_LEN else count)


def pooling_config(pooling: Pooling, dimension: int) -> dict:
    """A sentence-transformers Pooling config.json, in the legacy keys that versions 3 to 6 all read."""
    keys = {key: mode is Pooling(pooling) for key, mode in _LEGACY_KEYS.items()}
    return {"word_embedding_dimension": dimension, **keys, "include_prompt": True}


class Dense(nn.Module):
    """One sentence-transformers Dense module: `activation(linear(x))`, (..., in) -> (..., out)."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, activation: nn.Module | None = None):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation = nn.Identity() if activation is None else activation

    @property
    def activation_function(self) -> str:
        """The activation's name as sentence-transformers writes it, e.g. 'torch.nn.modules.activation.Tanh'."""
        return f"{type(self.activation).__module__}.{type(self.activation).__qualname__}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))

    @classmethod
    def from_folder(cls, path: Path) -> Dense:
        """Read a sentence-transformers Dense folder (config.json + model.safetensors or pytorch_model.bin)."""
        path = Path(path)
        config = read_module_config(path, required=True)
        if config.get("use_residual") or config.get("module_input_name", "sentence_embedding") != "sentence_embedding":
            raise DistillError(f"{path}: only a Dense module on the sentence vector without a residual is supported")
        if not {"in_features", "out_features"} <= config.keys():
            raise DistillError(f"{path}/config.json: a Dense config needs in_features and out_features")
        # NOTE: sentence-transformers' default activation is Tanh when the config names none.
        name = config.get("activation_function", "torch.nn.modules.activation.Tanh")
        dense = cls(config["in_features"], config["out_features"], bias=config.get("bias", True),
                    activation=_torch_activation(name, path))  # fmt: skip
        if (path / "model.safetensors").is_file():
            state = load_file(str(path / "model.safetensors"))
        elif (path / "pytorch_model.bin").is_file():
            state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        else:
            raise DistillError(f"{path}: a Dense module without weights (no model.safetensors or pytorch_model.bin)")
        state = {re.sub(r"^activation_function\.", "activation.", k): v for k, v in state.items()}
        try:
            dense.load_state_dict(state)
        except RuntimeError as e:
            raise DistillError(f"{path}: the Dense weights do not match its config.json ({e!s:.200})") from e
        return dense.eval()

    def save(self, path: Path) -> None:
        """Write a sentence-transformers Dense folder that sentence-transformers and `from_folder` both read."""
        path = Path(path)
        state = {re.sub(r"^activation\.", "activation_function.", k): v.detach().contiguous()
                 for k, v in self.state_dict().items()}  # fmt: skip
        save_with(path / "model.safetensors", lambda tmp: save_file(state, str(tmp)))
        write_json(path / "config.json", {"in_features": self.linear.in_features, "bias": self.linear.bias is not None,
                                          "out_features": self.linear.out_features,
                                          "activation_function": self.activation_function})  # fmt: skip


def _torch_activation(name: str, path: Path) -> nn.Module:
    """An instance of the torch.nn module class `name`; anything else would be arbitrary code, so it is refused."""
    module_name, _, class_name = name.rpartition(".")
    activation = None
    if module_name.split(".")[0] == "torch":
        try:
            activation = getattr(importlib.import_module(module_name), class_name, None)
        except ImportError:
            activation = None
    if not (inspect.isclass(activation) and issubclass(activation, nn.Module)):
        raise DistillError(
            f"{path}: Dense activation {name!r} is not a torch.nn module class, and no other code is run"
        )
    try:
        return activation()
    except TypeError as e:
        raise DistillError(f"{path}: Dense activation {name!r} cannot be built without arguments") from e


@dataclass(frozen=True)
class TeacherFiles:
    """What a teacher's folder says; a plain transformers folder (no modules.json) means mean pooling alone."""

    transformer: Path  # the folder of the transformers model and its tokenizer
    pooling: Pooling = Pooling.MEAN
    include_prompt: bool = True
    dense: tuple[Path, ...] = ()  # the Dense module folders, in order
    normalize: bool = False
    max_length: int | None = None
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None

    def prompt(self, name: str | None = None, text: str | None = None) -> str:
        """`text` if given, else the prompt called `name`, else the teacher's default prompt, else none."""
        if text is not None:
            return text
        if name is None and self.default_prompt_name:
            name = self.default_prompt_name
            logger.info("using the teacher's default prompt %r", name)
        if name is None:
            return ""
        if name not in self.prompts:
            have = f"its prompts are {', '.join(map(repr, self.prompts))}" if self.prompts else "it has no prompts"
            raise DistillError(f"the teacher has no prompt named {name!r}; {have} (or give one with --prompt-text)")
        return self.prompts[name]


def read_teacher_files(path: Path) -> TeacherFiles:
    """Read modules.json and the modules' configs; refuse, in one line, what distill would not reproduce."""
    path = Path(path)
    if not (path / "modules.json").is_file():
        logger.info("%s has no modules.json (not a sentence-transformers folder): mean pooling, no normalize", path)
        return TeacherFiles(path)
    settings = read_module_config(path, ("config_sentence_transformers.json",))
    if settings.get("model_type", "SentenceTransformer") != "SentenceTransformer":
        raise DistillError(f"{path} is a sentence-transformers {settings['model_type']}; distill needs a "
                           "SentenceTransformer teacher (one that gives sentence vectors)")  # fmt: skip
    modules = read_json(path / "modules.json")
    kinds = [_module_kind(module) for module in modules]
    if not re.fullmatch(r"Transformer Pooling( Dense)*( Normalize)?", " ".join(kinds)):
        raise DistillError(f"{path}: modules {', '.join(kinds)} are not in the order distill runs them: "
                           "Transformer, Pooling, Dense (any number), Normalize (optional)")  # fmt: skip
    folders = [path / module.get("path", "") for module in modules]
    transformer = read_module_config(folders[0], _TRANSFORMER_CONFIGS)
    if transformer.get("transformer_task", "feature-extraction") != "feature-extraction":
        raise DistillError(f"{folders[0]}: a {transformer['transformer_task']!r} Transformer module; distill "
                           "runs feature-extraction encoders")  # fmt: skip
    pooling, include_prompt = _read_pooling(folders[1])
    for folder in folders[2:]:
        if read_module_config(folder).get("module_input_name", "sentence_embedding") != "sentence_embedding":
            raise DistillError(f"{folder}: a module on token vectors; distill only runs them on the sentence vector")
    return TeacherFiles(
        transformer=folders[0], pooling=pooling, include_prompt=include_prompt,
        dense=tuple(f for f, kind in zip(folders, kinds, strict=True) if kind == "Dense"),
        normalize=kinds[-1] == "Normalize", max_length=transformer.get("max_seq_length"),
        do_lower_case=bool(transformer.get("do_lower_case", False)),
        prompts={name: text or "" for name, text in (settings.get("prompts") or {}).items()},
        default_prompt_name=settings.get("default_prompt_name"),
    )  # fmt: skip


def _module_kind(module: dict) -> str:
    """'Transformer' for sentence_transformers.models.Transformer (and its newer paths); refuse other modules."""
    kind = str(module.get("type", ""))
    name = kind.rpartition(".")[2]
    if not kind.startswith("sentence_transformers.") or name not in UNDERSTOOD_MODULES:
        raise DistillError(
            f"teacher module {module.get('path') or module.get('name') or '?'!r} is a {kind!r}, which distill "
            f"does not run; it understands sentence-transformers' {', '.join(UNDERSTOOD_MODULES)} modules"
        )
    return name


def _read_pooling(folder: Path) -> tuple[Pooling, bool]:
    """The pooling mode (new `pooling_mode` key, else the legacy bools) and `include_prompt` of a Pooling folder."""
    config = read_module_config(folder, required=True)
    mode = config.get("pooling_mode")
    if mode is None:  # NOTE: as in sentence-transformers, no legacy key set means mean pooling
        modes = [m for key, m in _LEGACY_KEYS.items() if config.get(key)] or [Pooling.MEAN]
    else:
        names = [mode] if isinstance(mode, str) else list(mode)
        unknown = [n for n in names if n not in _ST_MODES]
        if unknown:
            raise DistillError(f"{folder}: unknown pooling mode {unknown[0]!r}; known: {', '.join(_ST_MODES)}")
        modes = [_ST_MODES[n] for n in names]
    if len(modes) > 1:
        raise DistillError(f"{folder}: pooling modes {', '.join(m.value for m in modes)} concatenated; "
                           "distill supports one pooling mode")  # fmt: skip
    return modes[0], bool(config.get("include_prompt", True))


def read_module_config(folder: Path, names: Sequence[str] = ("config.json",), required: bool = False) -> dict:
    """The first of `names` in `folder` as a dict; {} when there is none and it is not `required`."""
    for name in names:
        if (folder / name).is_file():
            try:
                return read_json(folder / name)
            except json.JSONDecodeError as e:
                raise DistillError(f"{folder / name} is not valid JSON ({e})") from e
    if required:
        raise DistillError(f"{folder} has no {names[0]}; the teacher's sentence-transformers files are incomplete")
    return {}
