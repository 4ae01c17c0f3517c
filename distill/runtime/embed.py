"""`distill embed`: embed a file of texts with an exported student, torch-free, into .npy or .jsonl.

Input: a .txt file (one text per line; row i of the output is line i, blank lines included) or a
.jsonl file (one object with a "text" field per line; blank lines are skipped). Each vector is stored
in the `VectorForm` asked for (`distill.runtime.vectors`): its first `dimensions` coordinates in the
teacher's basis (all of them by default), as float32, int8 or packed bits (binary). Output: a .npy
array, (n, dimensions) float32 or int8 or (n, ceil(dimensions / 8)) uint8, with a `<output>.json` beside
it that says which (`dimensions`, `precision`, the model); or a .jsonl file of
`{"index": i, "text": ..., "embedding": [...], "dimensions": k, "precision": ...}` lines (binary: the
packed bytes as integers, numpy's `packbits` order). Everything is written atomically: an interrupted run
leaves no partial file behind.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from distill.errors import DistillError
from distill.io import atomic_path
from distill.runtime.vectors import BASIS_FILE, PRECISIONS, store, to_int8

if TYPE_CHECKING:
    from distill.runtime import OnnxEmbedder

logger = logging.getLogger(__name__)

INPUT_SUFFIXES = (".txt", ".jsonl")
OUTPUT_SUFFIXES = (".npy", ".jsonl")
CHUNK = 1024  # texts per encode call: the unit of progress and of memory in flight
DTYPES = {"float32": np.float32, "int8": np.int8, "binary": np.uint8}  # of a stored vector's values
SIDECAR_SUFFIX = ".json"  # `vectors.npy` is described by `vectors.npy.json`
BIT_ORDER = "numpy packbits: dimension 0 is the high bit of byte 0; 1 where the centred coordinate is positive"


@dataclass(frozen=True)
class VectorForm:
    """How each vector is stored: its first `dimensions` coordinates in the teacher's basis, at `precision`
    (float32: 4 bytes a dimension; int8: 1 byte a dimension, each vector scaled so its largest value is 127;
    binary: 1 bit a dimension, the sign of each coordinate centred on the teacher's mean, 8 to a byte)."""

    dimensions: int
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise DistillError(f"vector precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.dimensions < 1:
            raise DistillError(f"dimensions must be at least 1, not {self.dimensions}")

    @property
    def width(self) -> int:
        """Values a stored vector has: `dimensions`, or the bytes its bits take."""
        return -(-self.dimensions // 8) if self.precision == "binary" else self.dimensions

    @property
    def bytes_per_vector(self) -> int:
        return self.width * np.dtype(DTYPES[self.precision]).itemsize

    def check(self, embedder: OnnxEmbedder) -> None:
        """DistillError of one line unless `embedder` can give vectors of this form."""
        embedder.check_dimensions(self.dimensions)
        if self.precision == "binary" and embedder.basis is None:
            raise DistillError(f"binary vectors are signs after centring on the teacher's mean, and "
                               f"{str(embedder.path)!r} has no teacher's basis ({BASIS_FILE}): export it again with "
                               "`distill export`")  # fmt: skip

    def stored(self, embedder: OnnxEmbedder, vectors: np.ndarray) -> np.ndarray:
        """(n, width) of `DTYPES[precision]`: the model's `vectors` (n, dim) in this form."""
        if embedder.basis is not None:
            return store(embedder.basis, vectors, self.dimensions, self.precision)
        return to_int8(vectors) if self.precision == "int8" else vectors  # NOTE: the full dim only, `check` saw to it


def read_texts(path: str | Path) -> list[str]:
    """The texts of a .txt file (one per line) or a .jsonl file (the "text" field of each object)."""
    path = Path(path)
    if path.suffix not in INPUT_SUFFIXES:
        raise DistillError(f"input {str(path)!r} must be a .txt (one text per line) or .jsonl file")
    if not path.is_file():
        raise DistillError(f"input file {str(path)!r} does not exist")
    try:
        with path.open(encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in f]
    except UnicodeDecodeError as e:
        raise DistillError(f"input file {str(path)!r} is not UTF-8 text: {e}") from e
    texts = lines if path.suffix == ".txt" else _jsonl_texts(lines, path)
    if not any(text.strip() for text in texts):
        raise DistillError(f"input file {str(path)!r} has no texts")
    return texts


def _jsonl_texts(lines: list[str], path: Path) -> list[str]:
    texts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise DistillError(f"{str(path)!r} line {number} is not JSON: {e}") from e
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DistillError(f'{str(path)!r} line {number} has no string "text" field')
        texts.append(record["text"])
    return texts


def embed_file(
    model_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    precision: str = "fp32",
    batch_size: int = 32,
    threads: int | None = None,
    progress: bool = False,
    dimensions: int | None = None,
    vector_precision: str = "float32",
) -> tuple[int, int]:
    """Embed every text of `input_path` with the export in `model_dir` into `output_path`, each vector in the
    `VectorForm` of `dimensions` (default: the model's dim) and `vector_precision`; (texts, dimensions).

    The export of a head tuned with its model embeds with the untuned model it ships (`distill.runtime.embeddings_of`),
    as `distill serve`'s /v1/embeddings does."""
    from distill.runtime import embeddings_of  # NOTE: here, so that a bad path fails before the model loads

    output_path = Path(output_path)
    if output_path.suffix not in OUTPUT_SUFFIXES:
        raise DistillError(f"output {str(output_path)!r} must end in .npy or .jsonl")
    if batch_size <= 0:
        raise DistillError(f"batch-size must be positive, not {batch_size}")
    texts = read_texts(input_path)
    # NOTE: a tuned head's export embeds with the untuned model beside it: its own graph's vectors are not the teacher's
    embedder = embeddings_of(model_dir, precision=precision, threads=threads)
    form = VectorForm(embedder.dim if dimensions is None else dimensions, vector_precision)
    form.check(embedder)
    blank = sum(not text.strip() for text in texts)
    if blank:
        logger.warning("%d of %d texts are blank; they keep their rows (a blank text has no tokens to embed)",
                       blank, len(texts))  # fmt: skip
    chunks = ((start, form.stored(embedder, vectors))
              for start, vectors in _encode_chunks(embedder, texts, batch_size, progress))  # fmt: skip
    if output_path.suffix == ".npy":
        _write_npy(output_path, chunks, len(texts), form, _description(embedder, form, len(texts)))
    else:
        _write_jsonl(output_path, chunks, texts, form)
    logger.debug("embedded %d texts into %s", len(texts), output_path)
    return len(texts), form.dimensions


def _description(embedder: OnnxEmbedder, form: VectorForm, count: int) -> dict[str, Any]:
    """What `<output>.npy.json` says of the vectors beside it."""
    config = embedder.config
    return {"count": count, "dimensions": form.dimensions, "precision": form.precision, "width": form.width,
            "dtype": np.dtype(DTYPES[form.precision]).name, "bytes_per_vector": form.bytes_per_vector,
            "bit_order": BIT_ORDER if form.precision == "binary" else None, "model": str(embedder.path),
            "model_name": config.name, "model_dim": embedder.dim, "model_precision": embedder.precision,
            "teacher": config.teacher}  # fmt: skip


def _write_npy(path: Path, chunks: Iterator[tuple[int, np.ndarray]], count: int, form: VectorForm,
               description: dict[str, Any]) -> None:  # fmt: skip
    """The stored vectors as one (count, width) array, and `description` beside it, both atomically."""
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    with atomic_path(path) as tmp, atomic_path(sidecar) as tmp_sidecar:
        vectors = np.lib.format.open_memmap(tmp, mode="w+", dtype=DTYPES[form.precision], shape=(count, form.width))
        for start, chunk in chunks:
            vectors[start : start + len(chunk)] = chunk
        vectors.flush()
        del vectors  # NOTE: close the memory map before the file is renamed into place
        tmp_sidecar.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, chunks: Iterator[tuple[int, np.ndarray]], texts: list[str], form: VectorForm) -> None:
    """One line a text: its index, the text, its stored vector and the form it is in."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for start, chunk in chunks:
            for i, vector in enumerate(chunk.tolist(), start=start):
                record = {"index": i, "text": texts[i], "embedding": vector, "dimensions": form.dimensions,
                          "precision": form.precision}  # fmt: skip
                f.write(json.dumps(record, ensure_ascii=False))
                f.write("\n")


def _encode_chunks(
    embedder: OnnxEmbedder, texts: list[str], batch_size: int, progress: bool
) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, (n, dim) vectors) for each chunk of `CHUNK` texts, with a progress bar."""
    with tqdm(total=len(texts), desc="embed", unit="text", disable=not progress) as bar:
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start : start + CHUNK]
            yield start, embedder.encode(chunk, batch_size=batch_size)
            bar.update(len(chunk))
