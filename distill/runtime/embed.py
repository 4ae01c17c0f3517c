"""`distill embed`: embed a file of texts with an exported student, torch-free, into .npy or .jsonl.

Input: a .txt file (one text per line; row i of the output is line i, blank lines included) or a
.jsonl file (one object with a "text" field per line; blank lines are skipped). Output: a .npy
array (n, dim) float32, or a .jsonl file of `{"index": i, "text": ..., "embedding": [...]}` lines.
The output is written atomically: an interrupted run leaves no partial file behind.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from distill.errors import DistillError
from distill.io import atomic_path

if TYPE_CHECKING:
    from distill.runtime import OnnxEmbedder

logger = logging.getLogger(__name__)

INPUT_SUFFIXES = (".txt", ".jsonl")
OUTPUT_SUFFIXES = (".npy", ".jsonl")
CHUNK = 1024  # texts per encode call: the unit of progress and of memory in flight


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
) -> tuple[int, int]:
    """Embed every text of `input_path` with the export in `model_dir` into `output_path`; (texts, dim)."""
    from distill.runtime import OnnxEmbedder  # NOTE: here, so that a bad path fails before the model loads

    output_path = Path(output_path)
    if output_path.suffix not in OUTPUT_SUFFIXES:
        raise DistillError(f"output {str(output_path)!r} must end in .npy or .jsonl")
    if batch_size <= 0:
        raise DistillError(f"batch-size must be positive, not {batch_size}")
    texts = read_texts(input_path)
    embedder = OnnxEmbedder(model_dir, precision=precision, threads=threads)
    blank = sum(not text.strip() for text in texts)
    if blank:
        logger.warning("%d of %d texts are blank; they keep their rows (a blank text has no tokens to embed)",
                       blank, len(texts))  # fmt: skip
    chunks = _encode_chunks(embedder, texts, batch_size, progress)
    with atomic_path(output_path) as tmp:
        if output_path.suffix == ".npy":
            vectors = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(texts), embedder.dim))
            for start, chunk in chunks:
                vectors[start : start + len(chunk)] = chunk
            vectors.flush()
            del vectors  # NOTE: close the memory map before the file is renamed into place
        else:
            with tmp.open("w", encoding="utf-8") as f:
                for start, chunk in chunks:
                    for i, vector in enumerate(chunk.tolist(), start=start):
                        f.write(json.dumps({"index": i, "text": texts[i], "embedding": vector}, ensure_ascii=False))
                        f.write("\n")
    logger.debug("embedded %d texts into %s", len(texts), output_path)
    return len(texts), embedder.dim


def _encode_chunks(
    embedder: OnnxEmbedder, texts: list[str], batch_size: int, progress: bool
) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, (n, dim) vectors) for each chunk of `CHUNK` texts, with a progress bar."""
    with tqdm(total=len(texts), desc="embed", unit="text", disable=not progress) as bar:
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start : start + CHUNK]
            yield start, embedder.encode(chunk, batch_size=batch_size)
            bar.update(len(chunk))
