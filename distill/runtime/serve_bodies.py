"""The bodies of `distill serve`'s OpenAI-shaped routes: what a request may hold, the `dimensions` it may ask for,
and how a response is written as JSON."""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from distill.runtime.guards import ApiError
from distill.runtime.vectors import BASIS_FILE, Basis


class EmbeddingRequest(BaseModel):
    """The body of `POST /v1/embeddings`, as OpenAI's API takes it (token-id inputs are not supported)."""

    input: str | list[str]
    model: str | None = None  # NOTE: accepted and ignored: this server has one model, named in every response
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None  # 1 to the model's dim: the first that many in the teacher's basis
    user: str | None = None


class ClassifyRequest(BaseModel):
    """The body of `POST /v1/classify`: one text or a list of texts."""

    input: str | list[str]
    model: str | None = None  # NOTE: accepted and ignored, as in /v1/embeddings


def requested_dimensions(requested: int | None, dim: int, basis: Basis | None) -> int:
    """The length of vector a request asks for (the model's `dim` when it names none), or a 400 that says what this
    model gives: 1 to its dim, fewer than its dim only with the teacher's `basis` (its export's `BASIS_FILE`)."""
    if requested is None or requested == dim:
        return dim
    if not 1 <= requested <= dim:
        raise ApiError(400, f"dimensions must be between 1 and {dim} (this model's vectors have {dim} dimensions), "
                       f"not {requested}", param="dimensions", code="invalid_dimensions")  # fmt: skip
    if basis is None:
        raise ApiError(400, f"this model's vectors have {dim} dimensions only, not {requested}: its export has no "
                       f"teacher's basis ({BASIS_FILE}) to cut shorter ones from; export it again with `distill "
                       "export`", param="dimensions", code="unsupported_dimensions")  # fmt: skip
    return requested


def shorten(vectors: np.ndarray, dimensions: int, basis: Basis | None) -> np.ndarray:
    """(n, dimensions) unit vectors: the first `dimensions` coordinates of `vectors` (n, dim) in the teacher's `basis`
    (`vectors` themselves at the full dim).

    NOTE: row by row in effect (`Basis.project`), after the batcher has handed the request its rows: a text's short
    vector depends on nothing else in its batch, as its full vector does not.
    """
    if basis is None or dimensions == vectors.shape[1]:
        return vectors
    return basis.project(vectors, dimensions)


def render_embeddings(vectors: np.ndarray, tokens: int, model_name: str, encoding_format: str) -> bytes:
    """OpenAI's embeddings response as JSON; base64 is the float32 little-endian bytes of each vector."""
    if encoding_format == "base64":
        rows: list[Any] = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
    else:
        rows = vectors.tolist()
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
        "model": model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def render_classes(probabilities: np.ndarray, labels: list[str], tokens: int, model_name: str) -> bytes:
    """The classify response as JSON: each text's most probable label and every label's probability."""
    data = [{"object": "classification", "index": i, "label": labels[int(row.argmax())],
             "probabilities": dict(zip(labels, row.tolist(), strict=True))}
            for i, row in enumerate(probabilities)]  # fmt: skip
    body = {"object": "list", "data": data, "model": model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
