"""The transformer student: a few of the teacher's own layers, optionally narrower, trained to match it.

Built from the teacher rather than from scratch: the embeddings and the chosen layers are copied
(sliced when the student is narrower), so training starts close to the teacher and only has to
repair what the missing layers did. It is trained on the teacher's sentence vectors and on its
token vectors in context (per-token regression of the last hidden state), in the teacher's space;
a narrower student ends in a learned projection back to the teacher's dimension.

The saved folder is also a sentence-transformers model (Transformer, Pooling, [Dense,] Normalize).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import nn
from transformers import BertConfig, BertModel

from distill.errors import DistillError
from distill.io import write_json
from distill.teacher import Pooling, pool
from students.base import Student, StudentConfig

if TYPE_CHECKING:
    from distill.targets import Targets
    from distill.teacher import Teacher

logger = logging.getLogger(__name__)

# The parts of a BERT config a student keeps from its teacher; the rest are the student's own.
_BERT_FIELDS = ("vocab_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act",
                "pad_token_id", "position_embedding_type")  # fmt: skip


@dataclass
class TransformerConfig(StudentConfig):
    layers: list[int] = field(default_factory=lambda: [0, 5])  # teacher layers to keep, in order
    hidden_size: int = 0  # 0: the teacher's; smaller gives a narrower student with a projection back
    heads: int = 0  # 0: as many as the teacher has (scaled down with the hidden size)
    intermediate_size: int = 0  # 0: the teacher's ratio to the hidden size
    pooling: str = Pooling.MEAN.value
    bert: dict[str, Any] = field(default_factory=dict)  # the teacher's BERT settings, set by from_teacher
    tokenizer_config: dict[str, Any] = field(default_factory=dict)  # for transformers' AutoTokenizer

    def __post_init__(self) -> None:
        super().__post_init__()
        self.layers = list(self.layers)
        if not self.layers:
            raise DistillError("the transformer student needs at least one layer (for example --layers 0,5)")
        if min(self.hidden_size, self.heads, self.intermediate_size) < 0:
            raise DistillError("hidden-size, heads and intermediate-size must be positive (or 0 for the teacher's)")
        if self.hidden_size and self.heads and self.hidden_size % self.heads:
            raise DistillError(
                f"hidden size {self.hidden_size} is not divisible by {self.heads} heads; choose sizes that divide"
            )
        Pooling(self.pooling)

    def bert_config(self) -> BertConfig:
        """The student's own BERT config: the teacher's, with the student's depth and widths."""
        return BertConfig(
            **{k: v for k, v in self.bert.items() if k in _BERT_FIELDS},
            hidden_size=self.hidden_size, num_attention_heads=self.heads, intermediate_size=self.intermediate_size,
            num_hidden_layers=len(self.layers), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        )  # fmt: skip


class TransformerStudent(Student):
    kind = "transformer"
    config_class = TransformerConfig
    special_tokens = True
    default_training: ClassVar[dict[str, Any]] = {
        "lr": 1e-3, "epochs": 2, "batch_size": 32, "patience": 2, "token_loss_weight": 1.0, "warmup": 0.05,
    }  # fmt: skip

    def __init__(self, config: TransformerConfig, tokenizer: Tokenizer) -> None:
        super().__init__(config, tokenizer)
        self.bert = BertModel(config.bert_config(), add_pooling_layer=False)
        self.projection = nn.Linear(config.hidden_size, config.dim) if config.hidden_size != config.dim else None

    @classmethod
    def from_teacher(cls, teacher: Teacher, targets: Targets, **options: Any) -> TransformerStudent:
        source = teacher.model.config
        layers = [int(i) for i in options.pop("layers", [0, source.num_hidden_layers - 1])]
        bad = [i for i in layers if not 0 <= i < source.num_hidden_layers]
        if bad:
            raise DistillError(
                f"layer {bad[0]} is not in the teacher; it has layers 0 to {source.num_hidden_layers - 1}"
            )
        hidden = int(options.pop("hidden_size", 0) or source.hidden_size)
        if hidden > source.hidden_size:
            raise DistillError(f"hidden size {hidden} is wider than the teacher's ({source.hidden_size})")
        heads = int(options.pop("heads", 0) or max(1, source.num_attention_heads * hidden // source.hidden_size))
        intermediate = int(
            options.pop("intermediate_size", 0) or round(source.intermediate_size * hidden / source.hidden_size)
        )
        config = cls.config_from_teacher(
            teacher, targets, layers=layers, hidden_size=hidden, heads=heads, intermediate_size=intermediate,
            pooling=teacher.pooling.value, bert={k: v for k, v in source.to_dict().items() if k in _BERT_FIELDS},
            tokenizer_config=_tokenizer_config(teacher),
            **options,
        )  # fmt: skip
        student = cls(config, teacher.tokenizer.backend_tokenizer)
        copy_teacher_weights(teacher.model, student.bert, layers)
        if student.projection is not None:  # start as the embedding back into the teacher's first coordinates
            with torch.no_grad():
                student.projection.weight.copy_(torch.eye(config.dim, hidden))
                student.projection.bias.zero_()
        # NOTE: the word table is half the teacher's weights and already in the right place; training it on a
        # small corpus costs a dense 30k x dim update per step and moves only the rows the corpus uses.
        student.bert.embeddings.word_embeddings.weight.requires_grad_(False)
        return student

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, seq) -> (batch, seq, dim) token vectors in the teacher's space."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden if self.projection is None else self.projection(hidden)

    def pool_tokens(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(pool(tokens, attention_mask, Pooling(self.config.pooling)), dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.pool_tokens(self.forward_tokens(input_ids, attention_mask), attention_mask)

    def export_module(self) -> nn.Module:
        """A copy with plain ("eager") attention for `distill export`.

        NOTE: onnxruntime ran the graph traced from eager attention 1.2x faster than the one traced
        from PyTorch's fused sdpa kernel (512 test texts, batch 32, 2 threads), with the same vectors.
        """
        module = copy.deepcopy(self)
        module.bert.set_attn_implementation("eager")
        return module

    def state_to_save(self) -> dict[str, torch.Tensor]:
        """The BERT weights under transformers' own names, so `BertModel.from_pretrained` reads the file."""
        return {k: v.detach().contiguous() for k, v in self.bert.state_dict().items()}

    def load_weights(self, state: dict[str, Any]) -> None:
        self.bert.load_state_dict(state)

    def save_extra(self, path: Path) -> None:
        """transformers config and tokenizer files, and the sentence-transformers modules around them."""
        self.bert.config.save_pretrained(path)
        write_json(path / "tokenizer_config.json", self.config.tokenizer_config)
        write_json(path / "sentence_bert_config.json", {"max_seq_length": self.config.max_length,
                                                        "do_lower_case": False})  # fmt: skip
        write_json(path / "config_sentence_transformers.json", {"similarity_fn_name": "cosine"})
        modules = [("sentence_transformers.models.Transformer", ""), ("sentence_transformers.models.Pooling",
                                                                        "1_Pooling")]  # fmt: skip
        write_json(path / "1_Pooling" / "config.json", {
            "word_embedding_dimension": self.config.hidden_size,
            "pooling_mode_mean_tokens": self.config.pooling == Pooling.MEAN.value,
            "pooling_mode_cls_token": self.config.pooling == Pooling.CLS.value,
            "pooling_mode_max_tokens": self.config.pooling == Pooling.MAX.value,
        })  # fmt: skip
        if self.projection is not None:
            # NOTE: mean pooling commutes with an affine map, so projecting after pooling equals our per-token order.
            modules.append(("sentence_transformers.models.Dense", "2_Dense"))
            write_json(path / "2_Dense" / "config.json", {
                "in_features": self.config.hidden_size, "out_features": self.config.dim, "bias": True,
                "activation_function": "torch.nn.modules.linear.Identity",
            })  # fmt: skip
            save_file({f"linear.{k}": v.detach().contiguous() for k, v in self.projection.state_dict().items()},
                      str(path / "2_Dense" / "model.safetensors"))  # fmt: skip
        modules.append(("sentence_transformers.models.Normalize", f"{len(modules)}_Normalize"))
        (path / modules[-1][1]).mkdir(exist_ok=True)
        write_json(path / "modules.json", [{"idx": i, "name": str(i), "path": p, "type": t}
                                           for i, (t, p) in enumerate(modules)])  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> TransformerStudent:
        student = super().load(path)
        if student.projection is not None:  # NOTE: kept only in the sentence-transformers Dense module's file
            state = load_file(str(Path(path) / "2_Dense" / "model.safetensors"))
            student.projection.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
        return student


def copy_teacher_weights(teacher: BertModel, student: BertModel, layers: list[int]) -> None:
    """Copy the teacher's embeddings and chosen layers into the student, sliced to its widths.

    NOTE: slicing keeps the first heads, the first feed-forward units and the first hidden
    coordinates. For a full-width student that is an exact copy; for a narrower one it is only a
    starting point that training repairs.
    """
    source_layers = teacher.encoder.layer
    with torch.no_grad():
        _copy_module(teacher.embeddings, student.embeddings)
        for target, index in zip(student.encoder.layer, layers, strict=True):
            _copy_module(source_layers[index], target)


def _copy_module(source: nn.Module, target: nn.Module) -> None:
    own = target.state_dict()
    for name, value in source.state_dict().items():
        if name in own:
            own[name].copy_(value[tuple(slice(0, n) for n in own[name].shape)])


def _tokenizer_config(teacher: Teacher) -> dict[str, Any]:
    """What transformers' AutoTokenizer needs beside tokenizer.json to load the teacher's tokenizer."""
    tokenizer = teacher.tokenizer
    return {
        "tokenizer_class": type(tokenizer).__name__.removesuffix("Fast"),
        "model_max_length": teacher.max_length,
        "do_lower_case": bool(getattr(tokenizer, "do_lower_case", False)),
        **{k: str(v) for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)},
    }
