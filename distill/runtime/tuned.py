"""A tuned head's export: its graph's sentence vectors left the teacher's space, so the untuned model ships beside it.

`distill head export` of a head trained together with its model (`distill head train --tune`) writes into the
export's `config.json` "tune" (the setting), "teacher_space": false, and "embeddings": the subfolder holding the
model it was tuned from (`EMBEDDINGS_DIR`, an ordinary export), or null when that model could not be loaded.
Embeddings of such an export come from that subfolder; the head's graph keeps giving labels or tags:

    from distill.runtime import OnnxClassifier, embeddings_of

    classifier = OnnxClassifier("exports/topic")  # labels, and the tuned vectors the head reads (`encode`)
    embedder = embeddings_of("exports/topic")  # the untuned model's vectors: an OnnxEmbedder of its embeddings/
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from distill.errors import DistillError
from distill.runtime.embedder import CONFIG_FILE, OnnxEmbedder

EMBEDDINGS_DIR = "embeddings"  # inside a tuned head's export: the untuned model, for embeddings
TUNED_CODE = "tuned_model"  # the error code of /v1/embeddings of a tuned export without its untuned model


@dataclass(frozen=True)
class Tuning:
    """What an export's `config.json` says of its model's training with a head.

    `setting` is the head's `--tune` ("none": the graph's vectors are those of the model as distilled, as any
    export's); `embeddings` is the folder of the untuned model shipped beside a tuned one (None: none shipped).
    """

    setting: str = "none"
    embeddings: Path | None = None

    @property
    def tuned(self) -> bool:
        return self.setting != "none"

    @classmethod
    def read(cls, model_dir: str | Path) -> Tuning:
        """The tuning of the export in `model_dir`; an unreadable `config.json` reads as untuned (the embedder that
        loads the folder says what is wrong with it)."""
        try:
            config = json.loads((Path(model_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(config, dict) or config.get("teacher_space", True) is not False:
            return cls()
        folder = config.get("embeddings")
        inside = isinstance(folder, str) and Path(folder).name == folder and folder not in ("", ".", "..")
        if folder is not None and not inside:
            raise DistillError(f"{str(Path(model_dir) / CONFIG_FILE)!r} names {folder!r} as its untuned model's "
                               "folder, which is not a folder inside the export: export it again with `distill head "
                               "export`")  # fmt: skip
        return cls(str(config.get("tune") or "unknown"), Path(model_dir) / folder if folder else None)


def untuned_missing(model_name: str, setting: str) -> str:
    """Why a tuned export without its untuned model gives no embeddings, and what to do, in one line."""
    return (f"the model '{model_name}' was tuned together with its head (--tune {setting}), so its sentence vectors "
            f"are not the teacher's, and its export holds no untuned model ({EMBEDDINGS_DIR}/) to embed with: export "
            "the head again with `distill head export` (which adds the untuned model) or serve the untuned "
            "student's export for embeddings")  # fmt: skip


def embeddings_of(model_dir: str | Path, *, precision: str = "fp32", threads: int | None = None) -> OnnxEmbedder:
    """The embedder of the export in `model_dir` whose vectors are embeddings in the teacher's space: the untuned
    model beside a tuned head's export, else the export itself.

    A tuned head's export without its untuned model (one made before it was shipped, or whose model could not be
    loaded at export) is a DistillError that says what to do.
    """
    tuning = Tuning.read(model_dir)
    if not tuning.tuned:
        return OnnxEmbedder(model_dir, precision=precision, threads=threads)
    if tuning.embeddings is None:
        raise DistillError(untuned_missing(Path(model_dir).name, tuning.setting))
    return OnnxEmbedder(tuning.embeddings, precision=precision, threads=threads)
