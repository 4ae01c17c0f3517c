"""Shorter and smaller sentence vectors that stay in the teacher's space, and search over them. numpy only.

A vector of D dimensions costs 4 D bytes to store as float32. Three ways to store less, each usable on its own
or together, all the same for a student and its teacher (so a student's vectors still search a teacher's index):

    dimensions   the first `k` coordinates in the teacher's `Basis`: the directions along which the teacher's
                 sentence vectors vary most (a PCA of its vectors of the training texts), centred on their
                 mean and made unit length again. `k` = D keeps the vector as it is, in the teacher's own axes.
    int8         each vector's values scaled so its largest is 127 and rounded (D bytes; the scale is dropped:
                 cosine does not read it)
    binary       each coordinate's sign after centring on the basis's mean, eight to a byte (D / 8 bytes)

Retrieval with binary document vectors is best done in two steps (`search`): the `rescore` x k documents nearest
by Hamming distance to the binarised query, then those few ranked again by the float query's dot product with
each document's ±1 vector (or with its int8 vector, when the int8 copies are kept on disk beside the bits):

    basis = Basis.load(export / BASIS_FILE)
    stored = store(basis, document_vectors, dimensions=384, precision="binary")   # (n, 48) uint8
    top = search(basis, query_vectors, stored, k=10, rescore=4)                   # (q, 10) document rows
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.errors import DistillError
from distill.io import atomic_path

BASIS_FILE = "basis.npz"  # in a student's folder and its export: `mean` (dim,) and `directions` (dim, dim)
PRECISIONS = ("float32", "int8", "binary")


@dataclass(frozen=True)
class Basis:
    """The teacher's sentence space in the order of its variance: `mean` (dim,) and orthonormal `directions`
    (dim, dim), one a row, the direction of most variance first."""

    mean: np.ndarray
    directions: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(cls, vectors: np.ndarray) -> Basis:
        """The principal directions of `vectors` (n, dim), each signed so its largest component is positive (the
        same vectors always give the same basis)."""
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or len(vectors) < 2:
            raise DistillError("a basis needs at least two vectors, (n, dim)")
        mean = vectors.mean(axis=0)
        centred = vectors - mean
        _, vecs = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues; columns are directions
        directions = vecs[:, ::-1].T  # (dim, dim): most variance first
        signs = np.sign(directions[np.arange(len(directions)), np.abs(directions).argmax(axis=1)])
        return cls(mean.astype(np.float32), (directions * signs[:, None]).astype(np.float32))

    def save(self, path: str | Path) -> None:
        """Write `mean` and `directions` to the .npz file `path`, atomically."""
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            np.savez(f, mean=self.mean, directions=self.directions)

    @classmethod
    def load(cls, path: str | Path) -> Basis:
        """The basis saved at `path`; DistillError of one line when the file is missing, damaged or misshapen."""
        try:
            with np.load(Path(path)) as data:
                mean, directions = np.asarray(data["mean"], np.float32), np.asarray(data["directions"], np.float32)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DistillError(f"{str(path)!r} is not a valid basis file ({e})") from e
        if mean.ndim != 1 or directions.shape != (len(mean), len(mean)):
            raise DistillError(f"{str(path)!r} is not a valid basis file (mean {mean.shape}, directions "
                               f"{directions.shape}; expected (dim,) and (dim, dim))")  # fmt: skip
        return cls(mean, directions)

    def check(self, dimensions: int) -> None:
        """DistillError unless 1 <= `dimensions` <= dim."""
        whole = isinstance(dimensions, int | np.integer) and not isinstance(dimensions, bool)
        if not whole or not 1 <= dimensions <= self.dim:
            raise DistillError(f"dimensions must be between 1 and {self.dim}, not {dimensions}")

    def project(self, vectors: np.ndarray, dimensions: int) -> np.ndarray:
        """(n, dimensions) unit vectors: `vectors` (n, dim) as they are when `dimensions` is the full dim, else their
        first `dimensions` coordinates in the basis, centred (a zero vector stays zero)."""
        self.check(dimensions)
        vectors = np.asarray(vectors, dtype=np.float32)
        if dimensions == self.dim:
            return vectors
        empty = ~np.any(vectors, axis=1)
        # NOTE: einsum, not `@`: BLAS picks its kernel by the number of rows, so a row's product (random 384-wide
        # rows) moved by up to 5e-5 between a batch of 1 and of 300; einsum's loops give each row the same sums
        # whatever else is in the batch (the service's promise), at 2x the cost of `@` for 64 dimensions (3 ms for
        # 1,024 vectors on this machine's CPU)
        projected = np.einsum("nd,kd->nk", vectors - self.mean, self.directions[:dimensions])  # (n, dimensions)
        projected[empty] = 0.0
        return unit(projected)

    def centred(self, vectors: np.ndarray, dimensions: int) -> np.ndarray:
        """What `binary` takes the signs of: the projection when shortened, else the vectors less the mean."""
        return self.project(vectors, dimensions) if dimensions < self.dim else np.asarray(vectors) - self.mean


def unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def to_int8(vectors: np.ndarray) -> np.ndarray:
    """(n, d) int8: each vector scaled so its largest absolute value is 127, rounded."""
    top = np.abs(vectors).max(axis=1, keepdims=True)
    return np.rint(vectors / np.where(top > 0, top, 1.0) * 127).astype(np.int8)


def to_binary(vectors: np.ndarray) -> np.ndarray:
    """(n, ceil(d / 8)) uint8: a bit a value, 1 where it is positive (numpy's packbits order)."""
    return np.packbits(np.asarray(vectors) > 0, axis=1)


def from_binary(bits: np.ndarray, dimensions: int) -> np.ndarray:
    """(n, dimensions) float32 ±1 from packed bits."""
    return np.unpackbits(bits, axis=1, count=dimensions).astype(np.float32) * 2 - 1


def store(basis: Basis, vectors: np.ndarray, dimensions: int, precision: str) -> np.ndarray:
    """The vectors as they are stored: float32 unit vectors, int8, or packed bits, of `dimensions` each."""
    if precision not in PRECISIONS:
        raise DistillError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "binary":
        return to_binary(basis.centred(vectors, dimensions))
    projected = basis.project(vectors, dimensions)
    return to_int8(projected) if precision == "int8" else projected


def similarity_vectors(stored: np.ndarray, dimensions: int, precision: str) -> np.ndarray:
    """Stored vectors back as float32 unit vectors whose dot products are the stored form's cosines."""
    if precision == "binary":
        return unit(from_binary(stored, dimensions))
    return unit(stored.astype(np.float32))


def search(
    basis: Basis, queries: np.ndarray, stored: np.ndarray, k: int, *, dimensions: int | None = None,
    precision: str = "binary", rescore: int = 4, rescore_with: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """(q, k) rows of `stored` (documents) nearest each of `queries` (q, dim: float vectors as the model gives them).

    For binary documents: the `rescore` x k nearest by Hamming distance to the binarised queries, then ranked by
    the float query's dot product with each candidate's ±1 vector, or with its int8 vector in `rescore_with`
    ((n, dimensions) int8, the documents' int8 copies). `rescore=0` ranks by Hamming distance alone.
    Other precisions: exact dot products of the query with the stored vectors.
    """
    dimensions = dimensions or basis.dim
    k = min(k, len(stored))
    if k <= 0:
        return np.zeros((len(queries), 0), dtype=np.int64)
    query_vectors = basis.project(queries, dimensions)
    if precision != "binary":
        return _top(query_vectors @ similarity_vectors(stored, dimensions, precision).T, k)
    query_bits = to_binary(basis.centred(queries, dimensions))
    hamming = _hamming(query_bits, stored)  # (q, n)
    if rescore <= 0:
        return _top(-hamming.astype(np.float32), k)
    candidates = _top(-hamming.astype(np.float32), min(len(stored), rescore * k))  # (q, c)
    # NOTE: only the candidates' rows are read and widened to float (an int8 copy may be a memory map of a file far
    # larger than memory); the whole collection as float32 was 4 x its int8 bytes, 32 x its bits
    rows = candidates.reshape(-1)
    if rescore_with is not None:
        documents = unit(np.asarray(rescore_with[rows], dtype=np.float32))  # (q * c, dimensions)
        query_side = query_vectors
    else:
        documents = from_binary(stored[rows], dimensions)
        query_side = basis.centred(queries, dimensions)
    documents = documents.reshape(*candidates.shape, dimensions)  # (q, c, dimensions)
    scores = np.einsum("qd,qcd->qc", query_side, documents)  # (q, c)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(candidates, order, axis=1)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Hamming distances between packed bit rows."""
    out = np.empty((len(a), len(b)), dtype=np.int32)
    for row, bits in enumerate(a):
        out[row] = _POPCOUNT[np.bitwise_xor(b, bits)].sum(axis=1)
    return out


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """(q, k) column indices of each row's k largest scores, largest first (ties: the lower index first)."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)
