"""`OnnxEmbedder`: sentence vectors from an exported student with numpy, onnxruntime and tokenizers, no torch.

An export folder (written by `distill export`) holds `model.onnx` (fp32), `model_int8.onnx`,
`tokenizer.json`, `config.json` and the teacher's basis (`basis.npz`, `distill.runtime.vectors`: what
shorter vectors are cut from). The graph returns pooled, L2-normalised sentence vectors, so
this module only tokenizes and batches (and shortens). A graph takes its token ids in one of two forms, which
`config.json` names (`inputs`): "padded", `input_ids` and `attention_mask` (batch, seq), or
"flat", the batch's token ids text after text (tokens,) and each text's `offsets` (batch,), for a
table lookup (the static student) whose cost is then its tokens, with no padding:

    from distill.runtime import OnnxEmbedder

    embedder = OnnxEmbedder("runs/default/export/static", threads=4)
    vectors = embedder.encode(["a sentence", "another one"])  # (2, dim) float32, unit length
    short = embedder.encode(["a sentence"], dimensions=64)  # (1, 64): the first 64 in the teacher's basis

Install with `pip install 'distill-embeddings[runtime]'`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from itertools import chain
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from distill.errors import DistillError
from distill.runtime.vectors import BASIS_FILE, Basis

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
MODEL_FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
INPUT_NAMES = ("input_ids", "attention_mask")  # a padded graph's inputs, (batch, seq) each
FLAT_INPUT_NAMES = ("input_ids", "offsets")  # a flat graph's: (tokens,) and (batch,), as torch's EmbeddingBag takes
INPUTS = ("padded", "flat")
OUTPUT_NAME = "sentence_vectors"
T = TypeVar("T")


class UntokenizableText(DistillError):
    """A text the tokenizer refuses: `index` is its place in the texts given, `reason` says why."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"text {index} cannot be tokenized: {reason}")
        self.index, self.reason = index, reason

    @classmethod
    def first_of(cls, texts: Sequence[str], tokenizer: Tokenizer, error: Exception) -> UntokenizableText:
        """The first of `texts` that is not Unicode text or that `tokenizer` refuses alone (`error` if none does)."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                return cls(index, f"it is of type {type(text).__name__}, not a string")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                return cls(index, f"it is not valid Unicode text: a lone surrogate (U+{ord(text[e.start]):04X}) at "
                                  f"character {e.start}")  # fmt: skip
            try:
                tokenizer.encode(text)
            except Exception as alone:
                return cls(index, (str(alone).splitlines() or [type(alone).__name__])[0][:200])
        return cls(0, (str(error).splitlines() or [type(error).__name__])[0][:200])


@dataclass(frozen=True)
class ExportConfig:
    """What a production caller needs to know about an exported student (`config.json`)."""

    name: str  # the student's name in its run
    kind: str  # static, transformer, tokengen, ...
    dim: int
    pooling: str  # how token vectors become one sentence vector, inside the graph
    normalize: bool  # whether the graph L2-normalises its output
    max_length: int  # texts are truncated to this many tokens
    add_special_tokens: bool  # whether the tokenizer adds [CLS] / [SEP]
    teacher: str  # the model this student was distilled from
    version: str  # the distill-embeddings version that exported it
    format: int = 1
    prompt: str = ""  # put before every text, as the student was distilled (e5's "query: ")
    inputs: str = "padded"  # the graph's inputs: "padded" (INPUT_NAMES) or "flat" (FLAT_INPUT_NAMES)

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise DistillError(f"export inputs must be one of {', '.join(INPUTS)}, not {self.inputs!r}")

    @classmethod
    def read(cls, path: Path) -> ExportConfig:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        except (OSError, ValueError, TypeError, DistillError) as e:
            raise DistillError(f"{str(path)!r} is not a valid export config: {e}") from e

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n", encoding="utf-8")


class OnnxEmbedder:
    """Sentence vectors from an exported student folder, on onnxruntime's CPU provider."""

    def __init__(self, path: str | Path, *, precision: str = "fp32", threads: int | None = None) -> None:
        """`precision` is "fp32" (`model.onnx`) or "int8" (`model_int8.onnx`); `threads` caps onnxruntime's
        intra-op threads (default: onnxruntime's choice, one per core; a flat graph runs on one)."""
        self.path = Path(path)
        if precision not in MODEL_FILES:
            raise DistillError(f"precision must be one of {', '.join(MODEL_FILES)}, not {precision!r}")
        model_file = self.path / MODEL_FILES[precision]
        if not self.path.is_dir():
            raise DistillError(f"{str(self.path)!r} does not exist; give an export folder (`distill export` writes "
                               "RUN/export/STUDENT)")  # fmt: skip
        for needed in (self.path / CONFIG_FILE, self.path / TOKENIZER_FILE, model_file):
            if not needed.is_file():
                raise DistillError(f"{str(self.path)!r} is not an exported student: {needed.name} is missing "
                                   "(run `distill export` first)")  # fmt: skip
        self.config = ExportConfig.read(self.path / CONFIG_FILE)
        self.precision = precision
        self.tokenizer = _load(Tokenizer.from_file, self.path / TOKENIZER_FILE, "tokenizer file")
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.config.max_length)
        options = ort.SessionOptions()
        if self.config.inputs == "flat":
            # NOTE: one thread. onnxruntime splits ScatterND's reduction over the tokens between its
            # threads, and two threads adding into the row of a text they share lose updates (seen:
            # one vector in ~100k off by up to 0.08). On 2 cores the lookup is no slower for it.
            threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = _load(lambda path: ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]),
                             model_file, "ONNX model")  # fmt: skip
        self._basis = self._read_basis()

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def basis(self) -> Basis | None:
        """The teacher's basis that shorter vectors are cut from (`BASIS_FILE`); None for an export made without
        one (before shorter vectors existed), which then gives full vectors only."""
        return self._basis

    def _read_basis(self) -> Basis | None:
        if not (self.path / BASIS_FILE).is_file():
            return None
        basis = Basis.load(self.path / BASIS_FILE)
        if basis.dim != self.dim:
            raise DistillError(f"{str(self.path / BASIS_FILE)!r} is of {basis.dim} dimensions, the model's vectors of "
                               f"{self.dim}: the export is damaged; write it again with `distill export`")  # fmt: skip
        return basis

    def check_dimensions(self, dimensions: int) -> None:
        """DistillError of one line unless this export gives vectors of `dimensions`: 1 to dim, fewer than dim only
        with a basis."""
        whole = isinstance(dimensions, int | np.integer) and not isinstance(dimensions, bool)
        if not whole or not 1 <= dimensions <= self.dim:
            raise DistillError(f"dimensions must be between 1 and {self.dim} (this model's vectors have {self.dim} "
                               f"dimensions), not {dimensions}")  # fmt: skip
        if dimensions < self.dim and self.basis is None:
            raise DistillError(f"{str(self.path)!r} has no teacher's basis ({BASIS_FILE}), so its vectors have "
                               f"{self.dim} dimensions only, not {dimensions}: export it again with `distill export` "
                               "for shorter ones")  # fmt: skip

    def shorten(self, vectors: np.ndarray, dimensions: int) -> np.ndarray:
        """(n, dimensions) unit vectors from this model's `vectors` (n, dim): their first `dimensions` coordinates in
        the teacher's basis (`Basis.project`), or `vectors` themselves when `dimensions` is the full dim."""
        self.check_dimensions(dimensions)
        return vectors if dimensions == self.dim else self.basis.project(vectors, dimensions)

    def encodings(self, texts: Sequence[str]) -> list[Encoding]:
        """The tokenizer's call alone: each text with the student's prompt before it, truncated to the max length.

        NOTE: `encode_batch_fast` gives the same ids as `encode_batch` without character offsets,
        which nothing here reads: 20% more texts/s on the default student's tokenizer.
        """
        prompt = self.config.prompt
        prompted = [prompt + t for t in texts] if prompt else list(texts)
        try:
            return self.tokenizer.encode_batch_fast(prompted, add_special_tokens=self.config.add_special_tokens)
        except Exception as e:  # NOTE: the tokenizers library raises plain Exceptions (and TypeErrors for non-text)
            raise UntokenizableText.first_of(texts, self.tokenizer, e) from e

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, with the student's prompt before it, truncated to the max length."""
        return [e.ids for e in self.encodings(texts)]

    def encode(self, texts: Sequence[str], batch_size: int = 32, *, dimensions: int | None = None) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors in the order of `texts`, or (len(texts), dimensions): the first
        `dimensions` coordinates in the teacher's basis (`shorten`; an export without a basis refuses fewer than dim).

        Texts are truncated to `config.max_length` tokens and batched by length (least padding)
        for a padded graph, in order for a flat one.
        A text with no tokens at all (an empty string, for a student without [CLS] / [SEP]) gets
        a zero vector, as the torch student gives it.
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts; wrap a single text in a list")
        if dimensions is not None:
            self.check_dimensions(dimensions)  # NOTE: before the model runs, so a bad value costs nothing
        vectors = self.encode_ids(self.token_ids(texts), batch_size)
        return vectors if dimensions is None else self.shorten(vectors, dimensions)

    def encode_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 32) -> np.ndarray:
        """`encode` for texts already tokenized by `token_ids` (a caller that also counts tokens tokenizes once)."""
        return self.outputs_ids(ids, [OUTPUT_NAME], batch_size)[0]

    def outputs_ids(self, ids: Sequence[Sequence[int]], names: Sequence[str], batch_size: int = 32) -> list[np.ndarray]:
        """The graph's outputs `names`, each (len(ids), width) float32 in the order of `ids`, one session run a batch.

        Batched by length (least padding) for a padded graph, in order for a flat one.
        """
        if batch_size <= 0:
            raise DistillError(f"batch_size must be positive, not {batch_size}")
        if self.config.inputs == "flat":  # no padding: any order costs the same
            order = np.arange(len(ids))
        else:
            order = np.argsort([-len(x) for x in ids], kind="stable")
        out = [np.zeros((len(ids), self.output_width(name)), dtype=np.float32) for name in names]
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            for rows, values in zip(out, self.session.run(list(names), self.feeds([ids[i] for i in index])),
                                    strict=True):  # fmt: skip
                rows[index] = values
        return out

    def output_width(self, name: str) -> int:
        """The second dimension of the graph's output `name`."""
        return self.dim if name == OUTPUT_NAME else self.widths[name]

    @functools.cached_property
    def widths(self) -> dict[str, int]:
        return {o.name: o.shape[1] for o in self.session.get_outputs()}

    def feeds(self, ids: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """The graph's inputs for one batch of token id lists: padded, or flat with offsets."""
        if self.config.inputs == "flat":
            return dict(zip(FLAT_INPUT_NAMES, flatten(ids), strict=True))
        return dict(zip(INPUT_NAMES, pad(ids), strict=True))


def _load(load: Callable[[str], T], path: Path, what: str) -> T:
    """`load(path)`, or a DistillError of one line naming the file when it is empty, truncated or corrupt."""
    try:
        return load(str(path))
    except Exception as e:  # NOTE: onnxruntime and tokenizers raise their own classes, or plain Exceptions
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = "it is empty" if path.stat().st_size == 0 else (lines[-1] if lines else type(e).__name__)[:200]
        raise DistillError(f"{str(path)!r} is not a valid {what} ({reason}): the export is damaged; write it "
                           "again with `distill export`") from e  # fmt: skip


def pad(ids: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists into int64 (batch, seq) `input_ids` and `attention_mask`."""
    length = max((len(x) for x in ids), default=0) or 1
    input_ids = np.full((len(ids), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(ids), length), dtype=np.int64)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = x
        attention_mask[row, : len(x)] = 1
    return input_ids, attention_mask


def flatten(ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists as one int64 `input_ids` (tokens,) and the `offsets` (batch,) where each list starts."""
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    return np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum())), offsets
