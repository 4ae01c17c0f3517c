"""Serve an exported student over HTTP: an OpenAI-compatible `POST /v1/embeddings` on FastAPI + uvicorn.

    distill serve --model runs/default/export/static --port 8000

    curl localhost:8000/v1/embeddings -H 'content-type: application/json' -d '{"input": ["a sentence"]}'

Each request's texts are checked and tokenized on their own, so a text that cannot be embedded is refused
with its request (400, naming the input) and never reaches a batch. Concurrent requests are then batched:
one background worker joins their texts into model calls of at most `batch_size` texts
(`distill.runtime.batcher`), runs them in a worker thread so the event loop keeps accepting requests, and
hands each request its own rows. Every export gives a text the same vector whatever it is batched with
(`distill export` checks it), so what a client gets never depends on other clients.

OpenAI's `dimensions` asks for shorter vectors: the first `dimensions` coordinates in the teacher's basis, unit
length again (`distill.runtime.vectors`), cut from each request's own rows; an export without the basis (made
before it existed) gives its full vectors only and answers 400 to anything shorter.

An export with a classification head (`distill head export`) also answers `POST /v1/classify`: each
text's label and the probabilities of every label, through the same batcher; an export with a tagger (a tokens
head) answers `POST /v1/tag`: each word of each text with its tag (`distill.runtime.serve_tag`). The export of a
head tuned together with its model (`distill head train --tune`) keeps those on its tuned graph, whose vectors are
no longer the teacher's: `POST /v1/embeddings` answers with the untuned model shipped beside it (`embeddings/`,
`distill.runtime.tuned`), through a batcher of its own, and with a 400 that says why when it has none.

Beside it: `GET /v1/models` (OpenAI's list of the one model served), `GET /metrics` (Prometheus text)
and `GET /health`. With an API key, every request but `GET /health` needs `Authorization: Bearer <key>`,
checked before anything else is done for it. A request's headers, body size and encoding are bounded as
they arrive (`distill.runtime.guards`). On SIGTERM or SIGINT uvicorn stops accepting, lets the requests in
flight finish, and the batcher answers everything queued before the process exits; a request still
unanswered after the graceful timeout gets a 503.

Errors have OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

NOTE: `max_wait_ms` (wait that long after the first request for others) defaults to 0: on a static
student over loopback, 5 ms of waiting cut 8 clients from about 1200 to 700 requests/s and added
5 ms to every request at low load, while requests already batch together under load without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from fastapi import FastAPI
from fastapi.responses import Response

from distill.errors import DistillError
from distill.runtime.batcher import Batcher
from distill.runtime.embedder import OnnxEmbedder
from distill.runtime.guards import (
    AnswerCancelled,
    ApiError,
    BearerAuth,
    BodyLimit,
    add_error_handlers,
    check_api_key,
    check_texts,
)
from distill.runtime.metrics import Metrics, Observe
from distill.runtime.serve_bodies import (
    ClassifyRequest,
    EmbeddingRequest,
    render_classes,
    render_embeddings,
    requested_dimensions,
    shorten,
)
from distill.runtime.serve_info import add_info_routes
from distill.runtime.serve_load import load_model as load_model  # NOTE: where callers of `serve` have found it
from distill.runtime.serve_load import load_models
from distill.runtime.serve_tag import Tagger, add_tag_route
from distill.runtime.tuned import TUNED_CODE, Tuning, untuned_missing
from distill.runtime.vectors import Basis

logger = logging.getLogger(__name__)

INLINE_FLOATS = 4096  # a response with more numbers than this is rendered off the event loop
INLINE_CHARS = 4096  # a request with more characters than this is tokenized off the event loop
H11_MAX_INCOMPLETE_EVENT = 64 * 1024  # bytes of a request head uvicorn buffers before it refuses it


class Embedder(Protocol):
    """What the service needs of an embedder (`distill.runtime.OnnxEmbedder` is one)."""

    precision: str

    @property
    def dim(self) -> int: ...

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]: ...

    def encode_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 32) -> np.ndarray: ...


@runtime_checkable
class Classifier(Embedder, Protocol):
    """An embedder with a classification head (`distill.runtime.OnnxClassifier` is one)."""

    labels: list[str]

    def encode_and_classify_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 32) -> np.ndarray: ...


def create_app(
    embedder: Embedder,
    *,
    model_name: str,
    embeddings: Embedder | None = None,
    tuning: Tuning | None = None,
    max_batch: int = 256,
    max_text_chars: int = 20000,
    max_wait_ms: float = 0,
    batch_size: int = 64,
    max_body_bytes: int | None = None,
    api_key: str | None = None,
    graceful_timeout: float | None = 30,
) -> FastAPI:
    """The service for `embedder`: `POST /v1/embeddings`, `GET /v1/models`, `GET /metrics` and `GET /health`,
    and `POST /v1/classify` when it is a `Classifier` (a 404 otherwise).

    A request may hold at most `max_batch` texts of at most `max_text_chars` characters each (413
    otherwise); an empty list gets an empty `data` list. A request body may hold at most `max_body_bytes`
    bytes, counted as they arrive (default: `default_body_limit`). `batch_size` is the most texts of one
    model call. With `api_key`, every request but `GET /health` needs `Authorization: Bearer <api_key>`
    (401 otherwise). At shutdown the batcher has `graceful_timeout` seconds to answer what is queued.

    `POST /v1/embeddings` answers with `embeddings` when it is given, through a batcher of its own, else with
    `embedder`. When `tuning` (default: what the embedder's export folder says, `Tuning.read`) says the embedder's
    vectors were tuned with its head, `embeddings` default to the untuned model beside it (`distill.runtime.tuned`),
    and without one `POST /v1/embeddings` is a 400 that says why.
    """
    if min(max_batch, max_text_chars, batch_size) <= 0 or max_wait_ms < 0 or (max_body_bytes or 1) <= 0:
        raise DistillError("max_batch, max_text_chars, batch_size and max_body_bytes must be positive and max_wait_ms "
                           "not negative")  # fmt: skip
    check_api_key(api_key)
    max_body_bytes = max_body_bytes or default_body_limit(max_batch, max_text_chars)

    classifier = embedder if isinstance(embedder, Classifier) else None
    width = embedder.dim + (len(classifier.labels) if classifier is not None else 0)  # of the batcher's rows
    tuning, embeddings = _untuned_of(embedder, embeddings, tuning)

    def work(ids: list[Sequence[int]]) -> np.ndarray:
        if classifier is not None:
            # NOTE: each text's vector and probabilities side by side, (n, dim + classes), from one model call,
            # so that embedding and classify requests share batches; each route takes its columns.
            return classifier.encode_and_classify_ids(ids, batch_size=batch_size)
        return embedder.encode_ids(ids, batch_size=batch_size)

    batcher = Batcher(work, batch_size=batch_size, max_wait_ms=max_wait_ms)
    batchers = [batcher] if embeddings is None else [batcher, _own_batcher(embeddings, batcher)]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for each in batchers:
            each.start()
        yield
        # NOTE: uvicorn runs this after the requests in flight have finished
        await asyncio.gather(*(each.stop(graceful_timeout) for each in batchers))

    app = FastAPI(title="distill-embeddings", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher, app.state.batchers, app.state.metrics = batcher, batchers, Metrics()
    # NOTE: the last middleware added runs first: count every answer, answer a request cut off by shutdown, check
    # the key, then bound the headers and the body.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if api_key is not None:
        app.add_middleware(BearerAuth, key=api_key)
    app.add_middleware(AnswerCancelled)
    app.add_middleware(Observe, metrics=app.state.metrics)
    add_error_handlers(app)
    add_info_routes(app, model_name, dim=embedder.dim, precision=embedder.precision,
                    card=_card(embedder, tuning, embeddings))  # fmt: skip
    source = embedder if embeddings is None else embeddings  # what /v1/embeddings answers with, and its rows' width
    source_width = width if embeddings is None else embeddings.dim
    basis: Basis | None = getattr(source, "basis", None)  # the teacher's, for shorter vectors (`dimensions`)

    @app.post("/v1/embeddings")
    async def embed(body: EmbeddingRequest) -> Response:
        """Embed one text or a list of texts; `data[i]` is the vector of `input[i]`."""
        if tuning.tuned and embeddings is None:
            raise ApiError(400, untuned_missing(model_name, tuning.setting), code=TUNED_CODE)
        texts = [body.input] if isinstance(body.input, str) else body.input
        check_texts(texts, single=isinstance(body.input, str), max_batch=max_batch, max_text_chars=max_text_chars)
        dimensions = requested_dimensions(body.dimensions, source.dim, basis)
        rows, tokens = await _submit(batchers[-1], source, texts, source_width, single=isinstance(body.input, str))
        vectors = shorten(rows[:, : source.dim], dimensions, basis)  # (len(texts), dimensions)
        args = (vectors, tokens, model_name, body.encoding_format)
        # NOTE: 256 x 384 floats take about 100 ms to render as JSON; off the event loop, other requests go on
        if vectors.size <= INLINE_FLOATS:
            content = render_embeddings(*args)
        else:
            content = await asyncio.to_thread(render_embeddings, *args)
        return Response(content, media_type="application/json")

    _add_classify_route(app, classifier, model_name, max_batch=max_batch, max_text_chars=max_text_chars)
    add_tag_route(app, embedder if isinstance(embedder, Tagger) else None, model_name, max_batch=max_batch,
                  max_text_chars=max_text_chars, batch_size=batch_size)  # fmt: skip
    return app


def _untuned_of(embedder: Embedder, embeddings: Embedder | None, tuning: Tuning | None
                ) -> tuple[Tuning, Embedder | None]:  # fmt: skip
    """The tuning of `embedder` (`tuning`, or what its export folder says) and what /v1/embeddings answers with when
    that is not `embedder`: `embeddings`, or the untuned model beside a tuned export at the embedder's precision."""
    path = getattr(embedder, "path", None)
    tuning = tuning or (Tuning.read(path) if isinstance(path, Path) else Tuning())
    if embeddings is None and tuning.embeddings is not None:
        # NOTE: at onnxruntime's default threads; `serve` passes its own, loaded with --threads
        embeddings = OnnxEmbedder(tuning.embeddings, precision=embedder.precision)
    return tuning, embeddings


def _own_batcher(embeddings: Embedder, batcher: Batcher) -> Batcher:
    """The batcher of `embeddings` (the untuned model beside a tuned export), as `batcher` batches and counting into
    its counters."""
    size, wait = batcher.batch_size, batcher.max_wait_ms
    own = Batcher(lambda ids: embeddings.encode_ids(ids, batch_size=size), batch_size=size, max_wait_ms=wait)
    # NOTE: one set of counters for /health and /metrics, which count texts and model calls of either model; both
    # batchers update them on the event loop only
    own.stats, own.batch_sizes = batcher.stats, batcher.batch_sizes
    return own


def _card(embedder: Embedder, tuning: Tuning, embeddings: Embedder | None) -> dict[str, Any]:
    """What the model's card says beside OpenAI's fields: its labels or tags, and whether it was tuned with its head
    (and then whether /v1/embeddings answers with the untuned model beside it or is refused)."""
    card: dict[str, Any] = {}
    if isinstance(embedder, Classifier | Tagger):
        card["labels"] = list(embedder.labels)  # what POST /v1/classify or POST /v1/tag answers with
    if tuning.tuned:
        card.update(tuned=tuning.setting, embeddings="untuned" if embeddings is not None else "refused")
    return card


def default_body_limit(max_batch: int, max_text_chars: int) -> int:
    """The most bytes a request body may take by default: `max_batch` texts of `max_text_chars` characters, each
    escaped by JSON as `\\uXXXX` (6 bytes: any character but those past U+FFFF, which take 12), and 64 KiB more."""
    return max_batch * (6 * max_text_chars + 16) + (1 << 16)


async def _submit(batcher: Batcher, embedder: Embedder, texts: list[str], width: int, *, single: bool
                  ) -> tuple[np.ndarray, int]:  # fmt: skip
    """The model's (len(texts), width) rows for `texts` through the batcher, and their token count.

    The request is tokenized on its own first (off the event loop when it is long): a text the tokenizer
    refuses fails its own request with a 400 that names it, and never reaches a batch of other requests.
    """
    if not texts:
        return np.zeros((0, width), dtype=np.float32), 0
    if sum(map(len, texts)) <= INLINE_CHARS:
        ids = _token_ids(embedder, texts, single)
    else:
        ids = await asyncio.to_thread(_token_ids, embedder, texts, single)
    try:
        return await batcher.submit(ids), sum(map(len, ids))
    except ApiError:
        raise
    except Exception as e:
        raise ApiError(500, "the model failed on this request", kind="server_error") from e


def _token_ids(embedder: Embedder, texts: list[str], single: bool) -> list[list[int]]:
    """The request's token ids; a 400 naming the first text the tokenizer refuses (500 if none fails alone)."""
    try:
        return embedder.token_ids(texts)
    except Exception as e:  # NOTE: an embedder need not raise UntokenizableText; try each text alone then
        for i, text in enumerate(texts):
            try:
                embedder.token_ids([text])
            except Exception as alone:
                reason = getattr(alone, "reason", None) or (str(alone).splitlines() or [type(alone).__name__])[0][:200]
                raise ApiError(400, f"{'input' if single else f'input[{i}]'} cannot be tokenized: {reason}",
                               param="input", code="invalid_text") from alone  # fmt: skip
        raise ApiError(500, "the tokenizer failed on this request", kind="server_error") from e


def _add_classify_route(app: FastAPI, classifier: Classifier | None, model_name: str, *, max_batch: int,
                        max_text_chars: int) -> None:  # fmt: skip
    """`POST /v1/classify`: with a classifier, each text's label and label probabilities; without, a 404."""
    if classifier is None:

        @app.post("/v1/classify")
        async def no_head() -> Response:
            """A 404 that says why: the model served has no classification head."""
            raise ApiError(404, f"the model '{model_name}' has no classification head: serve an export made by "
                           "`distill head export` to classify", code="no_classification_head")  # fmt: skip

        return
    dim, labels = classifier.dim, classifier.labels

    @app.post("/v1/classify")
    async def classify(body: ClassifyRequest) -> Response:
        """Classify one text or a list of texts; `data[i]` is the label of `input[i]` and every label's probability."""
        texts = [body.input] if isinstance(body.input, str) else body.input
        single = isinstance(body.input, str)
        check_texts(texts, single=single, max_batch=max_batch, max_text_chars=max_text_chars)
        rows, tokens = await _submit(app.state.batcher, classifier, texts, dim + len(labels), single=single)
        probabilities = rows[:, dim:]  # (len(texts), classes)
        args = (probabilities, labels, tokens, model_name)
        if probabilities.size <= INLINE_FLOATS:
            content = render_classes(*args)
        else:
            content = await asyncio.to_thread(render_classes, *args)
        return Response(content, media_type="application/json")


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


SETTINGS_VARIABLE = "DISTILL_SERVE_SETTINGS"  # how `serve(workers=N)` hands its settings to each worker process


def serve(
    model_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    precision: str = "fp32",
    threads: int | None = None,
    model_name: str | None = None,
    access_log: bool = True,
    api_key: str | None = None,
    graceful_timeout: int = 30,
    workers: int = 1,
    **limits: Any,
) -> None:
    """Load the export in `model_dir` and serve it with uvicorn until SIGTERM or SIGINT.

    `limits` are `create_app`'s keyword arguments (max_batch, max_text_chars, max_wait_ms, batch_size).
    At a signal uvicorn stops accepting and waits up to `graceful_timeout` seconds for the requests in
    flight; those still running then are cancelled. With `workers` > 1, uvicorn starts that many
    processes on the one port, each loading the model (`app_from_environment`), with `threads` each
    (default: the cores shared out among them). A tuned head's export has the untuned model beside it loaded too, at
    the same precision and threads, for `POST /v1/embeddings` (`load_models`).
    """
    check_api_key(api_key)  # NOTE: before the model loads, so a bad key fails at once
    if workers < 1:
        raise DistillError(f"workers must be at least 1, not {workers}")
    import uvicorn

    threads = threads or (max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None)
    embedder, embeddings = load_models(model_dir, precision, threads)  # NOTE: a bad folder fails here, once
    settings = {"model_dir": str(model_dir), "precision": precision, "threads": threads, "api_key": api_key,
                "model_name": model_name or embedder.config.name, "graceful_timeout": graceful_timeout,
                **limits}  # fmt: skip
    if api_key is None and not _is_loopback(host):
        logger.warning("warning: no API key is set and %s is not a loopback address: anyone who reaches this port "
                       "can use it (set DISTILL_API_KEY)", host)  # fmt: skip
    logger.info("serving %s (%s, %d dimensions) on http://%s:%d%s", model_dir, precision, embedder.dim, host, port,
                f" with {workers} worker processes of {threads} threads" if workers > 1 else "")  # fmt: skip
    _log_routes(embedder, embeddings, Tuning.read(model_dir), settings["model_name"])
    # NOTE: h11 (the HTTP parser uvicorn uses here) holds at most this much of a request head; the app bounds
    # the head again (431), since a head that arrives in one read is never counted by h11
    options = {"host": host, "port": port, "access_log": access_log, "log_level": "info", "http": "h11",
               "h11_max_incomplete_event_size": H11_MAX_INCOMPLETE_EVENT,
               "timeout_graceful_shutdown": graceful_timeout}  # fmt: skip
    if workers == 1:
        uvicorn.run(_app((embedder, embeddings), settings), **options)
        return
    del embedder, embeddings
    os.environ[SETTINGS_VARIABLE] = json.dumps(settings)
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=workers, **options)


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker process of `serve(workers=N)`, from the settings it left in the environment."""
    settings = json.loads(os.environ[SETTINGS_VARIABLE])
    return _app(load_models(settings["model_dir"], settings["precision"], settings["threads"]), settings)


def _log_routes(embedder: Embedder, embeddings: Embedder | None, tuning: Tuning, model_name: str) -> None:
    """Say what the head's routes answer with and, for a tuned head's export, what /v1/embeddings does."""
    if isinstance(embedder, Classifier):
        logger.info("POST /v1/classify: %d labels (%s)", len(embedder.labels), ", ".join(embedder.labels))
    if isinstance(embedder, Tagger):
        logger.info("POST /v1/tag: %d tags (%s)", len(embedder.labels), ", ".join(embedder.labels))
    if tuning.tuned and embeddings is None:
        logger.warning("warning: POST /v1/embeddings is refused: %s", untuned_missing(model_name, tuning.setting))
    elif tuning.tuned:
        logger.info("POST /v1/embeddings: the untuned model in %s (the head's graph was tuned with --tune %s)",
                    tuning.embeddings, tuning.setting)  # fmt: skip


def _app(models: tuple[Embedder, Embedder | None], settings: dict[str, Any]) -> FastAPI:
    limits = {k: v for k, v in settings.items() if k not in ("model_dir", "precision", "threads")}
    return create_app(models[0], embeddings=models[1], **limits)
