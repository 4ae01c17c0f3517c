"""What `distill serve` loads from an export folder: the export as an embedder, a classifier or a tagger, and for a
tuned head's export the untuned model beside it (`distill.runtime.tuned`)."""

from __future__ import annotations

import json
from pathlib import Path

from distill.errors import DistillError
from distill.runtime.classifier import HEAD_FILE, OnnxClassifier
from distill.runtime.embedder import OnnxEmbedder
from distill.runtime.tagger import OnnxTagger
from distill.runtime.tuned import Tuning


def load_model(model_dir: str | Path, precision: str, threads: int | None) -> OnnxEmbedder:
    """The export in `model_dir`: an `OnnxTagger` when it holds a tokens head, an `OnnxClassifier` when it holds
    another head (`head.json`), else an `OnnxEmbedder`."""
    loader: type[OnnxEmbedder] = OnnxEmbedder
    if (Path(model_dir) / HEAD_FILE).is_file():
        try:
            task = json.loads((Path(model_dir) / HEAD_FILE).read_text(encoding="utf-8"))["config"].get("task")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise DistillError(f"{str(Path(model_dir) / HEAD_FILE)!r} is not a valid head config ({e})") from e
        loader = OnnxTagger if task == "tokens" else OnnxClassifier
    return loader(model_dir, precision=precision, threads=threads)


def load_models(model_dir: str | Path, precision: str, threads: int | None) -> tuple[OnnxEmbedder, OnnxEmbedder | None]:
    """The export in `model_dir` (`load_model`) and, for a tuned head's export, the untuned model beside it that
    `POST /v1/embeddings` answers with (`distill.runtime.tuned`; None for any other export, or one without it)."""
    embedder, tuning = load_model(model_dir, precision, threads), Tuning.read(model_dir)
    if tuning.embeddings is None:
        return embedder, None
    return embedder, OnnxEmbedder(tuning.embeddings, precision=precision, threads=threads)
