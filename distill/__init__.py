"""distill-embeddings: distill an encoder embedding model into small, fast students and ship them as ONNX.

    from distill import distill

    run = distill("sentence-transformers/all-MiniLM-L6-v2", "corpus.txt", students=["static", "transformer"])
    run["static"].encode(["a query", "a document"])

The packages, in the order the data flows through them:

    distill/teacher/   the teacher: a Hugging Face encoder and its sentence-transformers modules
    distill/data/      the corpus (streamed, cleaned, split, augmented) and the teacher's cached targets
    students/          one module per student architecture, behind `students.base.Student`
    distill/training/  the trainer, the losses, the run config and the pipeline (`distill run`)
    distill/export/    students to ONNX fp32 and int8, parity-checked (`distill export`)
    distill/heads/     task heads on a frozen model: a classifier, a tagger, and their export
    distill/runtime/   the torch-free production side: `OnnxEmbedder`, `distill embed`, `distill serve`
    eval/              the eval suite (`distill eval`); eval/experiments/ the benchmarks behind the docs
    distill/cli/       the `distill` command

`errors.py`, `io.py` (atomic writes), `device.py` and `distributed.py` are the floor every package stands on.
NOTE: `distill` is imported lazily, so `import distill.runtime` never loads torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Distilled", "distill", "distill_from_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from distill import api

        return getattr(api, name)
    raise AttributeError(f"module 'distill' has no attribute {name!r}")
