"""The transformer student: a few of the teacher's own layers, optionally narrower, trained to match it.

Built from the teacher rather than from scratch: the student is the teacher's own model class
(BERT, RoBERTa, XLM-RoBERTa, MPNet, DistilBERT, ELECTRA, ModernBERT) with a subset of its layers
copied (see `students.layer_subset`), so training starts close to the teacher and only has to
repair what the missing layers did. It keeps the teacher's pooling and its Dense modules after
pooling, and is trained on the teacher's sentence vectors and on its token vectors in context.
A narrower student projects its hidden states back to the teacher's width.

    hidden = encoder(input_ids)                         # (batch, seq, hidden)
    tokens = projection(hidden)                         # (batch, seq, token_dim), trained on token targets
    sentence = normalize(dense(projection(pool(hidden))))  # (batch, dim), as sentence-transformers computes it

The saved folder is also a transformers model (`AutoModel.from_pretrained`) and a
sentence-transformers model (Transformer, Pooling, [Dense...], Normalize).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerFast

from distill.errors import DistillError
from distill.io import read_json, write_json
from distill.teacher.model import Dense, Pooling, load_model, pool, pooling_config
from students.base import Student, StudentConfig
from students.layer_subset import Widths, build_encoder, check_choice, default_layers, family, intermediate_size

if TYPE_CHECKING:
    from distill.data.targets import Targets
    from distill.teacher.model import Teacher

logger = logging.getLogger(__name__)

PROJECTION_DIR = "2_Projection"


@dataclass
class TransformerConfig(StudentConfig):
    layers: list[int] = field(default_factory=list)  # teacher layers to keep, in order; [] = the default rule
    hidden_size: int = 0  # 0: the teacher's; smaller gives a narrower student with a projection back
    heads: int = 0  # 0: as many as the teacher has (scaled down with the hidden size)
    intermediate_size: int = 0  # 0: the teacher's ratio to the hidden size
    pooling: str = Pooling.MEAN.value
    token_dim: int = 0  # the teacher's hidden size (its token vectors); set by from_teacher
    family: str = ""  # the teacher's model_type

    def __post_init__(self) -> None:
        super().__post_init__()
        self.layers = [int(i) for i in self.layers]
        if min(self.hidden_size, self.heads, self.intermediate_size) < 0:
            raise DistillError("hidden-size, heads and intermediate-size must be positive (or 0 for the teacher's)")
        if self.hidden_size and self.heads and self.hidden_size % self.heads:
            raise DistillError(
                f"hidden size {self.hidden_size} is not divisible by {self.heads} heads; choose sizes that divide"
            )
        Pooling(self.pooling)


class TransformerStudent(Student):
    kind = "transformer"
    config_class = TransformerConfig
    special_tokens = True
    default_training: ClassVar[dict[str, Any]] = {
        "lr": 1e-3, "epochs": 2, "batch_size": 32, "patience": 2, "token_loss_weight": 1.0, "warmup": 0.05,
    }  # fmt: skip

    def __init__(
        self,
        config: TransformerConfig,
        tokenizer: Tokenizer,
        encoder: PreTrainedModel,
        dense: nn.Module | None = None,
        hf_tokenizer: PreTrainedTokenizerFast | None = None,
    ) -> None:
        super().__init__(config, tokenizer)
        self.encoder = encoder
        hidden = int(encoder.config.hidden_size)
        token_dim = config.token_dim or config.dim
        self.projection = nn.Linear(hidden, token_dim) if hidden != token_dim else None
        self.dense = dense
        self.hf_tokenizer = hf_tokenizer

    @classmethod
    def check_teacher(cls, teacher: Teacher, **options: Any) -> None:
        """Refuse, before any work, a teacher or layer choice this student cannot be built from."""
        check_choice(teacher.model, *_layers_and_width(teacher, options))

    @classmethod
    def from_teacher(cls, teacher: Teacher, targets: Targets, **options: Any) -> TransformerStudent:
        source = teacher.model.config
        layers, hidden = _layers_and_width(teacher, options)
        check_choice(teacher.model, layers, hidden)
        options = {k: v for k, v in options.items() if k not in ("layers", "hidden_size")}
        heads = int(options.pop("heads", 0) or max(1, source.num_attention_heads * hidden // source.hidden_size))
        intermediate = int(options.pop("intermediate_size", 0) or round(intermediate_size(source) * hidden
                                                                        / source.hidden_size))  # fmt: skip
        narrow = hidden != source.hidden_size
        config = cls.config_from_teacher(
            teacher, targets, layers=layers, hidden_size=hidden, heads=heads, intermediate_size=intermediate,
            pooling=teacher.pooling.value, token_dim=teacher.token_dim, family=family(source), **options,
        )  # fmt: skip
        encoder = build_encoder(teacher.model, layers, Widths(hidden, heads, intermediate) if narrow else None)
        dense = copy.deepcopy(teacher.dense).cpu() if teacher.dense is not None else None  # built on the CPU
        student = cls(config, teacher.tokenizer.backend_tokenizer, encoder, dense, teacher.tokenizer)
        if student.projection is not None:  # start as the embedding back into the teacher's first coordinates
            with torch.no_grad():
                student.projection.weight.copy_(torch.eye(config.token_dim, hidden))
                student.projection.bias.zero_()
        # NOTE: the word table is half a small teacher's weights and already in the right place; training it on a
        # small corpus costs a dense vocab x dim update per step and moves only the rows the corpus uses.
        student.encoder.get_input_embeddings().weight.requires_grad_(False)
        # NOTE: every layer at the teacher's width is the teacher itself (eval exports the teacher so), no student
        # worth a line of the log
        whole = layers == list(range(source.num_hidden_layers)) and not narrow
        logger.log(logging.DEBUG if whole else logging.INFO, "transformer%s: layers %s of the teacher's %d (%s), "
                   "hidden size %d", "" if whole else " student", layers, source.num_hidden_layers, config.family,
                   hidden)  # fmt: skip
        return student

    def forward_with_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, seq) -> token vectors (batch, seq, token_dim) and sentence vectors (batch, dim)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self._tokens_and_sentence(hidden, attention_mask)

    def forward_with_hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, int]]]:
        """Token and sentence vectors as `forward_with_tokens`, and each kept layer's output but the last with the
        index of the teacher layer it was copied from: [((batch, seq, hidden), teacher layer), ...].

        NOTE: the last layer's output is what the token loss already compares with the teacher's
        token vectors (after any final norm a family applies, which its hidden states leave out).
        """
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        kept = list(zip(out.hidden_states[1:-1], self.config.layers[:-1], strict=True))
        return *self._tokens_and_sentence(out.last_hidden_state, attention_mask), kept

    def _tokens_and_sentence(self, hidden: torch.Tensor, attention_mask: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Last layer (batch, seq, hidden) -> token vectors (batch, seq, token_dim), sentence vectors (batch, dim)."""
        tokens = hidden if self.projection is None else self.projection(hidden)
        return tokens, self._head(pool(hidden, attention_mask, Pooling(self.config.pooling)))

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, seq) -> (batch, seq, token_dim) token vectors in the teacher's space."""
        return self.forward_with_tokens(input_ids, attention_mask)[0]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self._head(pool(hidden, attention_mask, Pooling(self.config.pooling)))

    def _head(self, pooled: torch.Tensor) -> torch.Tensor:
        """(batch, hidden) pooled -> (batch, dim) unit sentence vectors: projection, the teacher's Dense, normalize."""
        if self.projection is not None:
            pooled = self.projection(pooled)
        if self.dense is not None:
            pooled = self.dense(pooled)
        return F.normalize(pooled, dim=-1)

    def export_module(self) -> nn.Module:
        """A copy with plain ("eager") attention for `distill export`.

        NOTE: onnxruntime ran the graph traced from eager attention 1.2x faster than the one traced
        from PyTorch's fused sdpa kernel (512 test texts, batch 32, 2 threads), with the same vectors.
        """
        module = copy.deepcopy(self)
        module.encoder.set_attn_implementation("eager")
        return module

    def attention_shape(self) -> tuple[int, int]:
        config = self.encoder.config
        return int(config.num_attention_heads), int(config.hidden_size)

    def state_to_save(self) -> None:
        """Nothing for the base file: `save_extra` writes the encoder with transformers' `save_pretrained`."""
        return None

    def save_extra(self, path: Path) -> None:
        """transformers model and tokenizer files, and the sentence-transformers modules around them."""
        self.encoder.save_pretrained(path)
        if self.hf_tokenizer is not None:
            self.hf_tokenizer.model_max_length = self.config.max_length
            self.hf_tokenizer.save_pretrained(path)
            self.tokenizer.save(str(path / "tokenizer.json"))  # NOTE: the student's own, truncating at max_length
        write_json(path / "sentence_bert_config.json", {"max_seq_length": self.config.max_length,
                                                        "do_lower_case": False})  # fmt: skip
        prompts = {"prompts": {"distilled": self.config.prompt}, "default_prompt_name": "distilled"}
        write_json(path / "config_sentence_transformers.json",
                   {"similarity_fn_name": "cosine", **(prompts if self.config.prompt else {})})  # fmt: skip
        hidden = int(self.encoder.config.hidden_size)
        modules = [("Transformer", ""), ("Pooling", "1_Pooling")]
        write_json(path / "1_Pooling" / "config.json", pooling_config(Pooling(self.config.pooling), hidden))
        dense = [] if self.projection is None else [(PROJECTION_DIR, _projection_as_dense(self.projection))]
        dense += [(f"{len(modules) + len(dense) + i}_Dense", d) for i, d in enumerate(self.dense or [])]
        for folder, module in dense:
            module.save(path / folder)
            modules.append(("Dense", folder))
        modules.append(("Normalize", f"{len(modules)}_Normalize"))
        (path / modules[-1][1]).mkdir(exist_ok=True)
        write_json(path / "modules.json", [{"idx": i, "name": str(i), "path": p,
                                            "type": f"sentence_transformers.models.{t}"}
                                           for i, (t, p) in enumerate(modules)])  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> TransformerStudent:
        path = Path(path)
        config = cls.read_config(path)
        encoder = load_model(path)
        projection = Dense.from_folder(path / PROJECTION_DIR) if (path / PROJECTION_DIR).is_dir() else None
        folders = [m["path"] for m in read_json(path / "modules.json") if m["type"].endswith(".Dense")]
        dense = [Dense.from_folder(path / f) for f in folders if f != PROJECTION_DIR]
        student = cls(config, Tokenizer.from_file(str(path / "tokenizer.json")), encoder,
                      nn.Sequential(*dense) if dense else None, AutoTokenizer.from_pretrained(str(path)))  # fmt: skip
        if (projection is None) != (student.projection is None):
            raise DistillError(f"{str(path)!r}: the saved projection does not match the student's widths")
        if projection is not None:
            student.projection.load_state_dict(projection.linear.state_dict())
        return student.eval()


def _layers_and_width(teacher: Teacher, options: dict[str, Any]) -> tuple[list[int], int]:
    """The teacher layers to keep (the default rule unless given) and the student's hidden size (0: the teacher's)."""
    source = teacher.model.config
    layers = [int(i) for i in options.get("layers") or default_layers(source.num_hidden_layers)]
    return layers, int(options.get("hidden_size") or source.hidden_size)


def _projection_as_dense(projection: nn.Linear) -> Dense:
    """The projection as a sentence-transformers Dense module with no activation."""
    dense = Dense(projection.in_features, projection.out_features)
    dense.linear.load_state_dict(projection.state_dict())
    return dense
