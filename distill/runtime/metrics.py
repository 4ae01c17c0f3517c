"""`GET /metrics` of `distill serve`: counters and histograms kept on the event loop, written as Prometheus text."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from distill.runtime.stats import BatchStats, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)  # seconds
# metric labels; any other path is "other"
ENDPOINTS = ("/health", "/metrics", "/v1/classify", "/v1/embeddings", "/v1/models")


@dataclass
class Metrics:
    """The HTTP side of `/metrics`; changed only on the event loop, so it needs no lock."""

    requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (endpoint, status) -> answers
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))  # POST /v1/embeddings, seconds
    in_flight: int = 0


class Observe:
    """ASGI middleware: count every HTTP answer by endpoint and status, and time the embedding requests."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, began = 500, time.perf_counter()  # 500: what the client gets if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.in_flight -= 1
            path = scope["path"]
            endpoint = path if path in ENDPOINTS else "/v1/models/{id}" if path.startswith("/v1/models/") else "other"
            self.metrics.requests[endpoint, status] += 1
            if endpoint == "/v1/embeddings":
                self.metrics.latency.observe(time.perf_counter() - began)


def prometheus_text(metrics: Metrics, stats: BatchStats, batch_sizes: Histogram) -> str:
    """The text Prometheus scrapes: for each metric a HELP and a TYPE line, then its samples."""
    requests = [f'distill_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}'
                for (endpoint, status), n in sorted(metrics.requests.items())]  # fmt: skip
    families = [
        ("requests_total", "counter", "HTTP requests answered, by endpoint and status (errors: status >= 400).",
         requests),
        ("texts_total", "counter", "Texts embedded.", [f"distill_texts_total {stats.texts}"]),
        ("tokens_total", "counter", "Tokens embedded (the usage the responses report).",
         [f"distill_tokens_total {stats.tokens}"]),
        ("request_seconds", "histogram", "Seconds to answer POST /v1/embeddings, any status.",
         metrics.latency.lines("distill_request_seconds")),
        ("batch_size", "histogram", "Texts per model call.", batch_sizes.lines("distill_batch_size")),
        ("requests_in_flight", "gauge", "HTTP requests being answered now.",
         [f"distill_requests_in_flight {metrics.in_flight}"]),
    ]  # fmt: skip
    lines = [f"# HELP distill_{name} {text}\n# TYPE distill_{name} {kind}\n" + "".join(f"{s}\n" for s in samples)
             for name, kind, text, samples in families]  # fmt: skip
    return "".join(lines)
