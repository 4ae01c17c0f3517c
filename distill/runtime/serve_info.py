"""The routes of `distill serve` that describe the service rather than run the model: `GET /health`, `GET /v1/models`,
`GET /v1/models/{id}` and `GET /metrics`."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from distill.runtime.batcher import Batcher
from distill.runtime.guards import ApiError
from distill.runtime.metrics import prometheus_text


def add_info_routes(app: FastAPI, model_name: str, *, dim: int, precision: str, card: dict[str, Any]) -> None:
    """`GET /health`, `/v1/models`, `/v1/models/{id}` and `/metrics` of the model `model_name` (`dim` and
    `precision` for /health, `card`: what its model card says besides OpenAI's fields).

    `app.state.batchers` are the app's batchers, the first the model's (its counters are what /health and /metrics
    report: the others share them).
    """
    batchers: list[Batcher] = app.state.batchers
    # NOTE: `created` is when this server loaded the model: an export records no date of its own.
    card = {"id": model_name, "object": "model", "created": int(time.time()), "owned_by": "distill-embeddings", **card}

    @app.get("/health")
    async def health() -> JSONResponse:
        """Liveness (503 if a batching worker is not running), the model served and the batching counters."""
        running = all(b.running for b in batchers)
        return JSONResponse({"status": "ok" if running else "down", "model": model_name, "dim": dim,
                             "precision": precision, "batching": asdict(batchers[0].stats)},
                            status_code=200 if running else 503)  # fmt: skip

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        """The one model this server has, in OpenAI's list format."""
        return JSONResponse({"object": "list", "data": [card]})

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> JSONResponse:
        """The model named `model_id`, if it is the one served (404 otherwise)."""
        if model_id != model_name:
            raise ApiError(404, f"the model '{model_id}' does not exist; this server has '{model_name}'",
                           param="model", code="model_not_found")  # fmt: skip
        return JSONResponse(card)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Counters, histograms and a gauge in Prometheus' text exposition format (version 0.0.4)."""
        return Response(
            prometheus_text(app.state.metrics, batchers[0].stats, batchers[0].batch_sizes),
            media_type="text/plain; version=0.0.4",
        )
