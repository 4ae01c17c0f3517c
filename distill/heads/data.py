"""What task heads read: labelled files, and the frozen encode function of a student, an export or a teacher.

A user's mistake (a missing column, one class, an empty file, a path that is no model) is one DistillError:

    texts, labels = read_labelled("train.csv", "text", "label")
    encode, about = encoder_for("runs/default/students/static")
    vectors = with_progress(encode)(texts)  # (n, dim), under a progress bar when there are many
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from distill.errors import DistillError

logger = logging.getLogger(__name__)

Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, dim) float32 sentence vectors
_READERS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


def read_labelled(
    path: str | Path, text_column: str = "text", label_column: str = "label"
) -> tuple[list[str], list[str]]:
    """Texts and their labels (as strings) from a .csv, .jsonl or .parquet file; a user's mistake is a DistillError."""
    frame = read_table(Path(path), columns=(text_column, label_column))
    texts, labels = frame[text_column], frame[label_column]
    unlabelled = np.flatnonzero(labels.isna().to_numpy())
    if len(unlabelled):
        raise DistillError(f"{str(path)!r}: {len(unlabelled)} rows have no {label_column!r} (first: row "
                           f"{unlabelled[0] + 1}); label them or drop them")  # fmt: skip
    empty = np.flatnonzero([not isinstance(t, str) or not t.strip() for t in texts])
    if len(empty):
        raise DistillError(f"{str(path)!r}: {len(empty)} rows have an empty {text_column!r} (first: row "
                           f"{empty[0] + 1}); fill them in or drop them")  # fmt: skip
    labels = [str(x) for x in labels]
    if len(set(labels)) < 2:
        raise DistillError(f"{str(path)!r}: a classifier needs at least 2 classes in {label_column!r}; found "
                           f"{len(set(labels))} ({', '.join(map(repr, sorted(set(labels))))})")  # fmt: skip
    return list(texts), labels


def read_table(path: Path, columns: Sequence[str] = ()) -> Any:
    """A .csv, .jsonl or .parquet file as a pandas DataFrame; a missing, empty or unreadable file, or one without
    all of `columns`, is a DistillError."""
    import pandas as pd

    if not path.is_file():
        raise DistillError(f"labelled data {str(path)!r} does not exist")
    if path.suffix.lower() not in _READERS:
        raise DistillError(f"labelled data {str(path)!r}: unsupported file type; use .csv, .jsonl or .parquet")
    kind = _READERS[path.suffix.lower()]
    try:
        if kind == "csv":
            frame = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""])
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise DistillError(f"labelled data {str(path)!r} cannot be read as {kind}: {str(e).splitlines()[0]}") from e
    if frame.empty:
        raise DistillError(f"labelled data {str(path)!r} is empty")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DistillError(f"{str(path)!r} has no column {', '.join(map(repr, missing))}; its columns are "
                           f"{', '.join(map(repr, map(str, frame.columns)))}")  # fmt: skip
    return frame


def encoder_for(model: str, precision: str = "fp32") -> tuple[Encode, str]:
    """The frozen encode function of `model` and a description of it.

    `model` is a saved student folder (`student.json`), an export folder (`config.json` and
    `model.onnx`; `precision` picks its fp32 or int8 graph), or else a teacher's folder or Hugging Face name.
    """
    from distill.runtime.embedder import CONFIG_FILE, MODEL_FILES, ExportConfig
    from students.base import CONFIG_FILE as STUDENT_CONFIG

    path = Path(model)
    if (path / STUDENT_CONFIG).is_file():
        import students

        student = students.load(path)
        return student.encode, f"{student.kind} student {model}"
    if (path / CONFIG_FILE).is_file() and (path / MODEL_FILES["fp32"]).is_file():
        from distill.runtime.embedder import OnnxEmbedder

        kind = ExportConfig.read(path / CONFIG_FILE).kind
        return OnnxEmbedder(path, precision=precision).encode, f"{kind} export {model} ({precision})"
    from distill.teacher.model import Teacher

    _check_model_path(model)
    return Teacher.load(model).sentence_vectors, f"teacher {model}"


def _check_model_path(model: str) -> None:
    """Refuse a local path that is no model, in words that name every kind (a hub name passes)."""
    path = Path(model).expanduser()
    kinds = "a saved student folder (student.json), an export folder (config.json and model.onnx) or a teacher"
    if path.is_dir() and not (path / "config.json").is_file() and not (path / "modules.json").is_file():
        raise DistillError(f"{model!r} is not a model folder: the model must be {kinds}")
    looks_local = model.startswith((".", "/", "~")) or (len(path.parts) > 1 and path.parent.is_dir())
    if not path.exists() and looks_local:
        raise DistillError(f"model {model!r} does not exist: it must be {kinds}'s folder or hub name")


def with_progress(encode: Encode, desc: str = "embedding", chunk: int = 1024) -> Encode:
    """`encode`, called on `chunk` texts at a time under a progress bar (with an ETA) when there are more."""

    def encode_all(texts: Sequence[str]) -> np.ndarray:
        if len(texts) <= chunk:
            return encode(texts)
        parts = []
        with tqdm(total=len(texts), desc=desc, unit="text") as bar:
            for start in range(0, len(texts), chunk):
                parts.append(encode(texts[start : start + chunk]))
                bar.update(len(parts[-1]))
        return np.concatenate(parts)

    return encode_all


def per_class(texts: Sequence[str], labels: Sequence[str], n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """At most `n` labelled texts of each class, drawn with `seed`, in their original order (few-label settings)."""
    if n < 1:
        raise DistillError(f"--per-class must be at least 1, not {n}")
    rng = np.random.default_rng(seed)
    labels_array = np.asarray(labels, dtype=str)
    kept = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels_array == c))[:n]
                                   for c in np.unique(labels_array)]))  # fmt: skip
    return [texts[i] for i in kept], [labels[i] for i in kept]
