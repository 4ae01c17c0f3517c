"""A model's vectors as they would be stored: fewer dimensions, int8 or binary (`distill.runtime.vectors`), each as a
`TaskEncoder` the task evaluators score like any model.

    forms = [VectorForm(128), VectorForm(None, "binary"), VectorForm(128, "int8")]
    encoders = with_forms(encoder, basis, forms)   # "static@128", "static@binary", "static@128/int8"

A form's vectors are what its stored vectors compare as: dot products of the returned unit vectors are the stored
form's cosines. Binary forms are scored the way they are searched (`distill.runtime.vectors.search`): documents as
their bits (±1), queries as the float vectors that rescore them (centred, and projected when shortened); texts a
task compares with each other (STS, classification, clustering) all as bits.

NOTE: retrieval here ranks every document by the rescoring score, where a service rescores only a shortlist of
the `rescore` x k documents nearest by Hamming distance; on NFCorpus shortlists of 4 x 100 and 10 x 100 gave the
same nDCG@10 for the teacher and both students (`python -m eval.experiments.rescore`), so the shortlist cut nothing
there that this counts.

Each form's raw vectors are computed once a process for all the forms of one model (held in memory by the texts'
fingerprint); with an identity, each form's document vectors are also cached on disk like any model's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from distill.runtime.vectors import PRECISIONS, Basis, similarity_vectors, store, unit
from eval.encoders import TaskEncoder, fingerprint


@dataclass(frozen=True)
class VectorForm:
    """How a vector is stored: its first `dimensions` in the basis (None: all, in the teacher's own axes), and
    `precision` ("float32", "int8" or "binary")."""

    dimensions: int | None = None
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")

    def label(self) -> str:
        """ "128", "binary", "128/int8": what follows a model's name and "@" in its column."""
        parts = [str(self.dimensions)] if self.dimensions else []
        return "/".join([*parts, *([self.precision] if self.precision != "float32" else [])]) or "full"

    def bytes_per_vector(self, dim: int) -> int:
        """Bytes one stored vector takes (`dim`: the model's full dimension)."""
        dims = self.dimensions or dim
        return {"float32": 4 * dims, "int8": dims, "binary": (dims + 7) // 8}[self.precision]


def with_forms(encoder: TaskEncoder, basis: Basis, forms: Sequence[VectorForm]) -> list[TaskEncoder]:
    """One `TaskEncoder` a form, named "NAME@LABEL", sharing the model's raw vectors (each role computed once)."""
    raw = _Memo()
    out = []
    for form in forms:
        dims = form.dimensions or basis.dim
        basis.check(dims)

        def stored(vectors: np.ndarray, dims: int = dims, precision: str = form.precision) -> np.ndarray:
            return similarity_vectors(store(basis, vectors, dims, precision), dims, precision)

        def query_side(
            vectors: np.ndarray, dims: int = dims, form: VectorForm = form, stored: Callable = stored
        ) -> np.ndarray:
            if form.precision != "binary":
                return stored(vectors)
            return unit(basis.centred(vectors, dims))  # NOTE: the float query a binary index is rescored with

        out.append(TaskEncoder(
            name=f"{encoder.name}@{form.label()}",
            encode=lambda texts, f=stored: f(raw(encoder.encode, "encode", texts)),
            query=lambda texts, f=query_side: f(raw(encoder.queries, _role(encoder, "query"), texts)),
            document=lambda texts, f=stored: f(raw(encoder.documents, _role(encoder, "document"), texts)),
            identity=_form_identity(encoder.identity, form),
            same_space=encoder.same_space and form.dimensions is None and form.precision == "float32",
        ))  # fmt: skip
    return out


def _role(encoder: TaskEncoder, role: str) -> str:
    """The memo's key for a role: "encode" where the model has no prompt of its own for it (the same vectors)."""
    return role if getattr(encoder, role) is not None else "encode"


def _form_identity(identity: Callable[[], str] | None, form: VectorForm) -> Callable[[], str] | None:
    if identity is None:
        return None
    return lambda: fingerprint([identity(), "vector form", form.label()])


class _Memo:
    """A model's raw vectors of each role, by the texts' fingerprint, for the forms derived from them."""

    def __init__(self) -> None:
        self.vectors: dict[tuple[str, str], np.ndarray] = {}

    def __call__(self, encode: Callable[[Sequence[str]], np.ndarray], role: str, texts: Sequence[str]) -> np.ndarray:
        key = (role, fingerprint(texts))
        if key not in self.vectors:
            self.vectors[key] = np.asarray(encode(texts), dtype=np.float32)
        return self.vectors[key]
