"""`distill.runtime.vectors`: the teacher's basis, shorter vectors cut from it, int8 and binary stored vectors, and
binary search with rescoring, each against plain numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distill.errors import DistillError
from distill.runtime.vectors import (
    Basis,
    from_binary,
    search,
    similarity_vectors,
    store,
    to_binary,
    to_int8,
    unit,
)

DIM = 24


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    """(300, DIM) unit vectors with most of their variance along a few directions, off the origin."""
    rng = np.random.default_rng(0)
    scales = np.geomspace(3.0, 0.05, DIM)
    return unit(rng.standard_normal((300, DIM)) * scales @ np.linalg.qr(rng.standard_normal((DIM, DIM)))[0] + 0.5)


@pytest.fixture(scope="module")
def basis(vectors: np.ndarray) -> Basis:
    return Basis.fit(vectors)


def test_the_basis_is_orthonormal_ordered_by_variance_and_the_same_every_time(
    vectors: np.ndarray, basis: Basis
) -> None:
    np.testing.assert_allclose(basis.directions @ basis.directions.T, np.eye(DIM), atol=1e-5)
    np.testing.assert_allclose(basis.mean, vectors.mean(axis=0), atol=1e-6)
    variances = ((vectors - basis.mean) @ basis.directions.T).var(axis=0)
    assert np.all(np.diff(variances) <= 1e-6)  # most variance first
    again = Basis.fit(vectors[::-1].copy())  # the same vectors in another order
    np.testing.assert_allclose(again.directions, basis.directions, atol=1e-4)  # signs fixed, not left to chance
    largest = basis.directions[np.arange(DIM), np.abs(basis.directions).argmax(axis=1)]
    assert np.all(largest > 0)


def test_project_of_the_full_dim_is_the_identity_and_shorter_is_numpy(vectors: np.ndarray, basis: Basis) -> None:
    np.testing.assert_array_equal(basis.project(vectors, DIM), vectors.astype(np.float32))
    short = basis.project(vectors, 5)  # (n, 5)
    expected = (vectors - basis.mean) @ basis.directions[:5].T
    np.testing.assert_allclose(short, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-6)
    with_zero = basis.project(np.vstack([vectors[:2], np.zeros(DIM)]), 5)
    assert not with_zero[2].any()  # an empty text's zero vector stays zero


def test_a_vectors_projection_does_not_depend_on_the_others_projected_with_it(
    vectors: np.ndarray, basis: Basis
) -> None:
    together = basis.project(vectors, 7)
    for size in (1, 2, 3, 17):
        np.testing.assert_array_equal(basis.project(vectors[:size], 7), together[:size])


@pytest.mark.parametrize("dimensions", [0, -1, DIM + 1, 2.5, True])
def test_dimensions_out_of_range_are_refused_in_one_line(basis: Basis, dimensions: object) -> None:
    with pytest.raises(DistillError, match=f"between 1 and {DIM}") as error:
        basis.project(np.zeros((1, DIM)), dimensions)  # type: ignore[arg-type]
    assert "\n" not in str(error.value)


def test_a_basis_survives_a_save_and_a_damaged_file_is_named(basis: Basis, tmp_path: Path) -> None:
    basis.save(tmp_path / "basis.npz")
    loaded = Basis.load(tmp_path / "basis.npz")
    np.testing.assert_array_equal(loaded.mean, basis.mean)
    np.testing.assert_array_equal(loaded.directions, basis.directions)
    assert [p.name for p in tmp_path.iterdir()] == ["basis.npz"]  # no temporary file left behind
    (tmp_path / "cut.npz").write_bytes((tmp_path / "basis.npz").read_bytes()[:100])
    with pytest.raises(DistillError, match=r"cut\.npz.*not a valid basis"):
        Basis.load(tmp_path / "cut.npz")
    np.savez(tmp_path / "odd.npz", mean=basis.mean, directions=basis.directions[:3])
    with pytest.raises(DistillError, match=r"odd\.npz.*not a valid basis"):
        Basis.load(tmp_path / "odd.npz")


def test_int8_keeps_each_vectors_cosines_closely(vectors: np.ndarray, basis: Basis) -> None:
    stored = store(basis, vectors, 12, "int8")  # (n, 12) int8
    assert stored.dtype == np.int8 and stored.shape == (len(vectors), 12)
    assert np.all(np.abs(stored).max(axis=1) == 127)
    exact = basis.project(vectors, 12)
    back = similarity_vectors(stored, 12, "int8")
    np.testing.assert_allclose(back @ back.T, exact @ exact.T, atol=0.02)


def test_binary_is_the_sign_of_each_centred_coordinate_eight_to_a_byte(vectors: np.ndarray, basis: Basis) -> None:
    stored = store(basis, vectors, 12, "binary")  # (n, 2) uint8: 12 bits, padded to 16
    assert stored.dtype == np.uint8 and stored.shape == (len(vectors), 2)
    signs = np.where(basis.project(vectors, 12) > 0, 1.0, -1.0)
    np.testing.assert_array_equal(from_binary(stored, 12), signs)
    full = store(basis, vectors, DIM, "binary")  # the full dim: signs after centring on the mean, not of the vectors
    np.testing.assert_array_equal(from_binary(full, DIM), np.where(vectors - basis.mean > 0, 1.0, -1.0))
    back = similarity_vectors(stored, 12, "binary")
    np.testing.assert_allclose(back @ back.T, signs @ signs.T / 12, atol=1e-6)  # 1 - 2 x Hamming / bits


def test_store_refuses_an_unknown_precision(vectors: np.ndarray, basis: Basis) -> None:
    with pytest.raises(DistillError, match="float32, int8, binary"):
        store(basis, vectors, 8, "int4")


def _planted() -> tuple[Basis, np.ndarray, np.ndarray]:
    """A basis that changes nothing, a query, and documents where the nearest by Hamming distance is not the nearest.

    Document 0 agrees with every sign of the query but points elsewhere; documents 1 and 2 each flip one sign, 1 a
    large coordinate of the query, 2 a small one, and 2 is the nearest by cosine."""
    identity = Basis(np.zeros(8, np.float32), np.eye(8, dtype=np.float32))
    query = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.05]], np.float32)
    documents = np.array([
        [0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 2.0],
        [-0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.05],
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, -0.05],
    ], np.float32)  # fmt: skip
    return identity, unit(query), unit(documents)


def test_rescoring_finds_the_nearest_that_hamming_distance_alone_misses() -> None:
    basis, query, documents = _planted()
    documents = documents[1:]  # the two at Hamming distance 1: a tie that only the float query can break
    assert int(np.argmax(documents @ query[0])) == 1
    bits = store(basis, documents, 8, "binary")
    assert search(basis, query, bits, k=1, rescore=0).tolist() == [[0]]  # a tie: the lower row
    assert search(basis, query, bits, k=1, rescore=2).tolist() == [[1]]


def test_rescoring_with_int8_copies_finds_what_signs_alone_cannot() -> None:
    basis, query, documents = _planted()
    bits, int8 = store(basis, documents, 8, "binary"), store(basis, documents, 8, "int8")
    assert search(basis, query, bits, k=1, rescore=3).tolist() == [[0]]  # every sign agrees: ±1 rescoring keeps it
    ranked = search(basis, query, bits, k=3, rescore=1, rescore_with=int8)
    np.testing.assert_array_equal(ranked[0], np.argsort(-(documents @ query[0])))
    assert ranked[0, 0] == 2


def test_search_of_noisy_copies_finds_each_original(vectors: np.ndarray, basis: Basis) -> None:
    queries = unit(vectors[:40] + np.random.default_rng(1).normal(0, 0.01, (40, DIM)))
    exact = np.argmax(basis.project(queries, 16) @ basis.project(vectors, 16).T, axis=1)
    bits, int8 = store(basis, vectors, 16, "binary"), store(basis, vectors, 16, "int8")
    found = search(basis, queries, bits, k=1, dimensions=16, rescore=8, rescore_with=int8)[:, 0]
    np.testing.assert_array_equal(found, exact)
    floats = store(basis, vectors, 16, "float32")
    np.testing.assert_array_equal(search(basis, queries, floats, k=1, dimensions=16, precision="float32")[:, 0], exact)


def test_search_of_an_empty_collection_finds_nothing(basis: Basis, vectors: np.ndarray) -> None:
    empty = np.zeros((0, 3), np.uint8)
    assert search(basis, vectors[:2], empty, k=5, dimensions=20).shape == (2, 0)


def test_int8_and_binary_of_a_zero_vector_are_zero() -> None:
    assert not to_int8(np.zeros((1, 4))).any() and not to_binary(np.zeros((1, 4))).any()


def test_rescoring_reads_int8_copies_from_a_memory_mapped_file(
    vectors: np.ndarray, basis: Basis, tmp_path: Path
) -> None:
    """The recipe of docs/export-and-runtime.md: bits in memory, int8 copies on disk."""
    bits = store(basis, vectors, DIM, "binary")
    np.save(tmp_path / "int8.npy", store(basis, vectors, DIM, "int8"))
    on_disk = np.load(tmp_path / "int8.npy", mmap_mode="r")
    in_memory = np.load(tmp_path / "int8.npy")
    queries = vectors[:10]
    found = search(basis, queries, bits, k=5, rescore=4, rescore_with=on_disk)
    np.testing.assert_array_equal(found, search(basis, queries, bits, k=5, rescore=4, rescore_with=in_memory))
    np.testing.assert_array_equal(found[:, 0], np.arange(10))  # each query finds itself first
