"""The HTTP service: OpenAI-shaped answers equal to the runtime's vectors, clear errors, batching, an API key,
metrics, a graceful shutdown and a real server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import httpx
import numpy as np
import pytest
import uvicorn
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient

import distill.runtime.serve
from distill.cli.commands import main
from distill.errors import DistillError
from distill.runtime import OnnxEmbedder
from distill.runtime.serve import ApiError, Batcher, create_app
from eval.experiments.loadtest import load_test
from tests.conftest import SENTENCES

MAX_BATCH, MAX_CHARS = 8, 300
KEY = "s3cret-key"


@pytest.fixture()
def client(embedder: OnnxEmbedder) -> Iterator[TestClient]:
    app = create_app(embedder, model_name="tiny-static", max_batch=MAX_BATCH, max_text_chars=MAX_CHARS)
    with TestClient(app) as client:  # NOTE: `with` runs the lifespan, which starts the batching worker
        yield client


class SlowEmbedder:
    """The real embedder, slowed down (so requests pile up while it works), or made to fail in the model on any
    batch that holds the text `fail_on`, or in the tokenizer on the text `untokenizable`."""

    def __init__(self, embedder: OnnxEmbedder, delay: float = 0.0, fail_on: str | None = None,
                 untokenizable: str | None = None) -> None:  # fmt: skip
        self.embedder, self.delay, self.untokenizable = embedder, delay, untokenizable
        self.fail_ids = embedder.token_ids([fail_on])[0] if fail_on is not None else None
        self.precision, self.dim = embedder.precision, embedder.dim
        self.calls: list[int] = []  # texts per model call
        self.tokenized: list[int] = []  # texts per tokenizer call

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        self.tokenized.append(len(texts))
        if self.untokenizable is not None and self.untokenizable in texts:
            raise Exception("the tokenizer broke")  # NOTE: what the tokenizers library raises
        return self.embedder.token_ids(texts)

    def encode_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 32) -> np.ndarray:
        self.calls.append(len(ids))
        time.sleep(self.delay)
        if self.fail_ids is not None and any(list(x) == self.fail_ids for x in ids):
            raise RuntimeError("the model broke")
        return self.embedder.encode_ids(ids, batch_size)


def vectors_of(response: httpx.Response) -> np.ndarray:
    data = response.json()["data"]
    assert [d["index"] for d in data] == list(range(len(data)))
    return np.array([d["embedding"] for d in data], dtype=np.float32).reshape(len(data), -1)


def test_a_list_gets_one_vector_per_text_in_order(client: TestClient, embedder: OnnxEmbedder) -> None:
    texts = [SENTENCES[3], "short", SENTENCES[0] * 3, "ünïcödé text ✓"]
    response = client.post("/v1/embeddings", json={"input": texts, "model": "anything"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == "tiny-static"
    assert all(d["object"] == "embedding" for d in body["data"])
    np.testing.assert_allclose(vectors_of(response), embedder.encode(texts), atol=1e-6)
    tokens = sum(len(ids) for ids in embedder.token_ids(texts))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_a_single_string_gets_one_vector(client: TestClient, embedder: OnnxEmbedder) -> None:
    response = client.post("/v1/embeddings", json={"input": SENTENCES[1]})
    assert response.status_code == 200
    vectors = vectors_of(response)
    assert vectors.shape == (1, embedder.dim)
    np.testing.assert_allclose(vectors[0], embedder.encode([SENTENCES[1]])[0], atol=1e-6)


def test_an_empty_list_gets_empty_data(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"input": []})
    assert response.status_code == 200
    assert response.json()["data"] == [] and response.json()["usage"]["prompt_tokens"] == 0


def test_a_large_response_rendered_off_the_event_loop_is_the_same(
    client: TestClient, embedder: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(distill.runtime.serve, "INLINE_FLOATS", 10)
    response = client.post("/v1/embeddings", json={"input": SENTENCES[:MAX_BATCH]})
    np.testing.assert_allclose(vectors_of(response), embedder.encode(SENTENCES[:MAX_BATCH]), atol=1e-6)


def test_base64_is_little_endian_float32_of_the_same_vector(client: TestClient) -> None:
    as_float = vectors_of(client.post("/v1/embeddings", json={"input": SENTENCES[:2]}))
    response = client.post("/v1/embeddings", json={"input": SENTENCES[:2], "encoding_format": "base64"})
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in response.json()["data"]]
    np.testing.assert_array_equal(np.stack(decoded), as_float)


@pytest.mark.parametrize(
    ("texts", "code"),
    [(["a text"] * (MAX_BATCH + 1), "too_many_inputs"), (["fine", "x" * (MAX_CHARS + 1)], "text_too_long")],
)
def test_an_oversized_request_is_refused_before_any_work(client: TestClient, texts: list[str], code: str) -> None:
    response = client.post("/v1/embeddings", json={"input": texts})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == code and error["param"] == "input"
    assert str(MAX_BATCH if code == "too_many_inputs" else MAX_CHARS) in error["message"]
    assert client.get("/health").json()["batching"]["encode_calls"] == 0


def test_a_body_over_the_size_limit_is_refused(embedder: OnnxEmbedder) -> None:
    with TestClient(create_app(embedder, model_name="m", max_body_bytes=1000)) as client:
        response = client.post("/v1/embeddings", json={"input": ["y" * 2000]})
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"input": ["unterminated"', "not valid JSON"),
        (b'{"input": 3}', "string or a list of strings"),
        (b'{"input": ["ok", 2]}', "string or a list of strings"),
        (b'{"text": "no input field"}', "'input' is required"),
        (b'["a", "b"]', "JSON object"),
        (b"", "JSON object"),
        (b'{"input": "a", "encoding_format": "hex"}', "encoding_format"),
        (b'{"input": "a", "dimensions": 3}', "16 dimensions"),
    ],
)
def test_a_malformed_body_is_a_400_json_error(client: TestClient, body: bytes, message: str) -> None:
    response = client.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and message in error["message"]


def test_unknown_paths_and_methods_answer_json_errors(client: TestClient) -> None:
    assert client.get("/v1/nothing").json()["error"]["code"] == "http_404"
    assert client.get("/v1/embeddings").json()["error"]["code"] == "http_405"


def test_health_names_the_model(client: TestClient, embedder: OnnxEmbedder) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model"] == "tiny-static"
    assert body["dim"] == embedder.dim == 16 and body["precision"] == "fp32"


def bearer(key: str = KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture()
def guarded(embedder: OnnxEmbedder) -> Iterator[tuple[TestClient, SlowEmbedder]]:
    """A client of a service that needs the key `KEY`, and the embedder it counts calls on."""
    slow = SlowEmbedder(embedder)
    with TestClient(create_app(slow, model_name="tiny-static", api_key=KEY)) as client:
        yield client, slow


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong"),
        bearer(KEY + "x"),
        bearer(KEY[:-1]),
        {"authorization": f"Basic {KEY}"},
        {"authorization": KEY},
    ],
)
def test_without_the_key_everything_but_health_is_refused_before_any_work(
    guarded: tuple[TestClient, SlowEmbedder], headers: dict[str, str]
) -> None:
    client, slow = guarded
    headers = {**headers, "content-type": "application/json"}
    requests = [("POST", "/v1/embeddings", b'{"input": ["a text"]}'), ("POST", "/v1/embeddings", b"{"),
                ("GET", "/v1/models", b""), ("GET", "/metrics", b""), ("GET", "/nowhere", b"")]  # fmt: skip
    for method, path, body in requests:
        response = client.request(method, path, content=body, headers=headers)
        assert response.status_code == 401, path  # 401 before the malformed body's 400: the body is not read
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
    assert slow.tokenized == [] and slow.calls == []  # no model call
    assert client.get("/health").status_code == 200


def test_with_the_key_every_endpoint_answers(guarded: tuple[TestClient, SlowEmbedder], embedder: OnnxEmbedder) -> None:
    client, _ = guarded
    response = client.post("/v1/embeddings", json={"input": SENTENCES[:2]}, headers=bearer())
    np.testing.assert_allclose(vectors_of(response), embedder.encode(SENTENCES[:2]), atol=1e-6)
    assert client.get("/v1/models", headers={"authorization": f"bearer  {KEY}"}).status_code == 200  # any case
    assert client.get("/metrics", headers=bearer()).status_code == 200


@pytest.mark.parametrize("key", ["", " ", "two words", "naïve", "tab\tkey"])
def test_a_key_no_client_could_send_is_refused(embedder: OnnxEmbedder, key: str) -> None:
    with pytest.raises(DistillError, match="API key"):
        create_app(embedder, model_name="m", api_key=key)


def test_models_lists_the_one_model_served(client: TestClient, embedder: OnnxEmbedder) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list" and len(body["data"]) == 1
    card = body["data"][0]
    assert card["id"] == "tiny-static" and card["object"] == "model" and card["owned_by"] == "distill-embeddings"
    assert isinstance(card["created"], int) and abs(card["created"] - time.time()) < 600
    assert client.get("/v1/models/tiny-static").json() == card
    missing = client.get("/v1/models/text-embedding-3-small")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found" and "tiny-static" in missing.json()["error"]["message"]
    with TestClient(create_app(embedder, model_name="org/student")) as other:  # a name with a slash has its own path
        assert other.get("/v1/models/org/student").json()["id"] == "org/student"


def samples(exposition: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample of a Prometheus text exposition, each metric declared before use."""
    declared, out = set(), {}
    for line in exposition.splitlines():
        if line.startswith("#"):
            match = re.fullmatch(r"# (HELP (\w+) .+|TYPE (\w+) (counter|gauge|histogram))", line)
            assert match, line
            declared.add(match.group(2) or match.group(3))
            continue
        key, value = line.rsplit(" ", 1)
        name = re.fullmatch(r'(\w+?)(_bucket|_sum|_count)?(\{(\w+="[^"]*",?)+\})?', key)
        assert name and (name.group(1) in declared or name.group(1) + (name.group(2) or "") in declared), line
        out[key] = float(value)
    return out


def test_metrics_count_requests_texts_tokens_latency_and_batches(client: TestClient, embedder: OnnxEmbedder) -> None:
    client.post("/v1/embeddings", json={"input": SENTENCES[:3]})
    client.post("/v1/embeddings", json={"input": "one more"})
    client.post("/v1/embeddings", json={"input": ["x" * (MAX_CHARS + 1)]})
    client.get("/nowhere")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    metrics = samples(response.text)
    assert metrics['distill_requests_total{endpoint="/v1/embeddings",status="200"}'] == 2
    assert metrics['distill_requests_total{endpoint="/v1/embeddings",status="413"}'] == 1
    assert metrics['distill_requests_total{endpoint="other",status="404"}'] == 1
    tokens = sum(len(ids) for ids in embedder.token_ids([*SENTENCES[:3], "one more"]))
    assert metrics["distill_texts_total"] == 4 and metrics["distill_tokens_total"] == tokens
    assert metrics["distill_request_seconds_count"] == metrics['distill_request_seconds_bucket{le="+Inf"}'] == 3
    assert 0 < metrics["distill_request_seconds_sum"] < 10
    buckets = [metrics[f'distill_batch_size_bucket{{le="{le}"}}'] for le in (1, 2, 4, 512)]
    assert buckets == [1, 1, 2, 2] and metrics["distill_batch_size_sum"] == 4
    assert metrics["distill_requests_in_flight"] == 1  # the scrape itself


def test_a_model_failure_is_a_500_and_the_server_keeps_serving(embedder: OnnxEmbedder) -> None:
    app = create_app(SlowEmbedder(embedder, fail_on="boom"), model_name="m")
    with TestClient(app) as client:
        failed = client.post("/v1/embeddings", json={"input": ["fine", "boom"]})
        assert failed.status_code == 500 and failed.json()["error"]["type"] == "server_error"
        assert client.post("/v1/embeddings", json={"input": "fine"}).status_code == 200
        assert client.get("/health").json()["status"] == "ok"


def test_an_app_run_without_its_lifespan_answers_503_not_never(embedder: OnnxEmbedder) -> None:
    response = TestClient(create_app(embedder, model_name="m")).post("/v1/embeddings", json={"input": "a"})
    assert response.status_code == 503 and "not running" in response.json()["error"]["message"]


async def _post_concurrently(app: FastAPI, bodies: list[dict], stagger: float = 0.0) -> list[httpx.Response]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def post(i: int, body: dict) -> httpx.Response:
                await asyncio.sleep(i * stagger)
                return await client.post("/v1/embeddings", json=body)

            return await asyncio.gather(*(post(i, body) for i, body in enumerate(bodies)))


def test_concurrent_requests_are_batched_and_each_gets_its_own_vectors(embedder: OnnxEmbedder) -> None:
    slow = SlowEmbedder(embedder, delay=0.05)  # requests arriving during a model call join the next one
    app = create_app(slow, model_name="m", batch_size=64)
    inputs: list[str | list[str]] = [SENTENCES[i % 12] if i % 3 else SENTENCES[i % 12 : i % 12 + 2] for i in range(24)]
    responses = asyncio.run(_post_concurrently(app, [{"input": x} for x in inputs]))
    for x, response in zip(inputs, responses, strict=True):
        texts = [x] if isinstance(x, str) else x
        np.testing.assert_allclose(vectors_of(response), embedder.encode(texts), atol=1e-6)
    stats = app.state.batcher.stats
    assert stats.requests == 24 and stats.texts == sum(1 if isinstance(x, str) else len(x) for x in inputs)
    assert stats.encode_calls == len(slow.calls) <= 3 and stats.largest_batch > 1


def test_batch_size_caps_the_texts_per_model_call(embedder: OnnxEmbedder) -> None:
    slow = SlowEmbedder(embedder, delay=0.02)
    app = create_app(slow, model_name="m", batch_size=4)
    responses = asyncio.run(_post_concurrently(app, [{"input": s} for s in SENTENCES]))
    assert all(r.status_code == 200 for r in responses)
    assert max(slow.calls) <= 4 and len(slow.calls) >= 3


def test_max_wait_gathers_requests_that_arrive_apart(embedder: OnnxEmbedder) -> None:
    slow = SlowEmbedder(embedder)
    app = create_app(slow, model_name="m", max_wait_ms=500)
    responses = asyncio.run(_post_concurrently(app, [{"input": s} for s in SENTENCES[:4]], stagger=0.02))
    assert all(r.status_code == 200 for r in responses)
    assert slow.calls == [4]


def test_a_request_cancelled_while_it_waits_is_not_embedded() -> None:
    calls: list[list[Sequence[int]]] = []

    def work(ids: list[Sequence[int]]) -> np.ndarray:
        calls.append(ids)
        return np.zeros((len(ids), 2), dtype=np.float32)

    async def scenario() -> np.ndarray:
        batcher = Batcher(work)
        batcher.start()
        gone = asyncio.create_task(batcher.submit([[1, 2]]))
        kept = asyncio.create_task(batcher.submit([[3]]))
        await asyncio.sleep(0)  # both are queued
        gone.cancel()  # the client went away
        rows = await kept
        await batcher.stop()
        return rows

    assert asyncio.run(scenario()).shape == (1, 2)
    assert calls == [[[3]]]


def sleepy_work(seconds: float, calls: list[list[Sequence[int]]]) -> Any:
    """A model call that takes `seconds` and gives each text the row [its first token id, its length]."""

    def work(ids: list[Sequence[int]]) -> np.ndarray:
        calls.append(ids)
        time.sleep(seconds)
        return np.array([[x[0], len(x)] for x in ids], dtype=np.float32).reshape(len(ids), 2)

    return work


def test_stop_answers_every_request_submitted_before_it_and_refuses_later_ones() -> None:
    calls: list[list[Sequence[int]]] = []

    async def scenario() -> list[np.ndarray]:
        batcher = Batcher(sleepy_work(0.05, calls), batch_size=2)
        batcher.start()
        submitted = [asyncio.create_task(batcher.submit([[i]])) for i in range(7)]
        await asyncio.sleep(0.01)  # the first two are in the model, five wait
        await batcher.stop()
        assert all(task.done() for task in submitted) and not batcher.running
        with pytest.raises(ApiError, match="shutting down"):
            await batcher.submit([[99]])
        return await asyncio.gather(*submitted)

    assert [rows[0, 0] for rows in asyncio.run(scenario())] == list(range(7))
    assert calls == [[[0], [1]], [[2], [3]], [[4], [5]], [[6]]]


def test_a_drain_past_its_timeout_answers_503_not_never() -> None:
    async def scenario() -> list[Any]:
        batcher = Batcher(sleepy_work(0.5, []), batch_size=1)
        batcher.start()
        submitted = [asyncio.create_task(batcher.submit([ids])) for ids in ([1], [2])]  # in the model, queued
        await asyncio.sleep(0.01)
        await batcher.stop(timeout=0.05)
        return await asyncio.gather(*submitted, return_exceptions=True)

    assert [getattr(r, "status", r) for r in asyncio.run(scenario())] == [503, 503]


def test_the_lifespan_shutdown_lets_queued_requests_finish(embedder: OnnxEmbedder) -> None:
    slow = SlowEmbedder(embedder, delay=0.1)
    app = create_app(slow, model_name="m", batch_size=2)

    async def scenario() -> tuple[int, list[httpx.Response]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            async with app.router.lifespan_context(app):
                posts = [asyncio.create_task(client.post("/v1/embeddings", json={"input": s})) for s in SENTENCES[:6]]
                while not slow.calls:
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0.02)  # all six are submitted; the first model call still runs
                calls_at_shutdown = len(slow.calls)
            return calls_at_shutdown, await asyncio.gather(*posts)

    calls_at_shutdown, responses = asyncio.run(scenario())
    assert calls_at_shutdown == 1 and slow.calls == [2, 2, 2]
    for text, response in zip(SENTENCES[:6], responses, strict=True):
        np.testing.assert_allclose(vectors_of(response), embedder.encode([text]), atol=1e-6)


@contextlib.contextmanager
def on_loopback(app: FastAPI, **config: Any) -> Iterator[tuple[str, uvicorn.Server, threading.Thread]]:
    """`app` under a real uvicorn server on a free loopback port, in a thread; stopped on exit."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive()


def test_a_real_server_on_loopback(embedder: OnnxEmbedder) -> None:
    with on_loopback(create_app(embedder, model_name="tiny-static")) as (url, _, _):
        response = httpx.post(f"{url}/v1/embeddings", json={"input": SENTENCES[:3]})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        np.testing.assert_allclose(vectors_of(response), embedder.encode(SENTENCES[:3]), atol=1e-6)
        bad = httpx.post(f"{url}/v1/embeddings", content=b"{", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "error" in bad.json()


def test_a_real_server_told_to_stop_finishes_the_requests_in_flight(embedder: OnnxEmbedder) -> None:
    slow = SlowEmbedder(embedder, delay=0.3)
    app = create_app(slow, model_name="m", batch_size=2)  # 4 one-text requests: at least 2 model calls, 0.6 s
    with on_loopback(app, timeout_graceful_shutdown=10) as (url, server, thread), ThreadPoolExecutor(4) as pool:
        posts = [pool.submit(httpx.post, f"{url}/v1/embeddings", json={"input": s}, timeout=30) for s in SENTENCES[:4]]
        while app.state.metrics.in_flight < 4 or not slow.calls:
            time.sleep(0.01)
        server.should_exit = True  # what uvicorn does on SIGTERM or SIGINT
        calls_at_stop = len(slow.calls)
        responses = [post.result() for post in posts]
        thread.join(timeout=10)
        assert not thread.is_alive()
        with pytest.raises(httpx.ConnectError):  # it no longer accepts
            httpx.get(f"{url}/health")
    assert [r.status_code for r in responses] == [200] * 4
    assert sum(slow.calls) == 4 and len(slow.calls) > calls_at_stop  # the model still worked after the stop


def test_several_worker_processes_serve_one_port(export_dir: Path, embedder: OnnxEmbedder) -> None:
    import httpx

    pair = ["the cat sat on the mat", "a dog"]
    from eval.experiments.loadtest import running_server

    with running_server(export_dir, threads=1, workers=2, api_key=KEY) as url:
        answers = [httpx.post(f"{url}/v1/embeddings", json={"input": pair}, headers=bearer(), timeout=30)
                   for _ in range(6)]  # fmt: skip
        assert httpx.post(f"{url}/v1/embeddings", json={"input": ["x"]}, timeout=30).status_code == 401
    assert [a.status_code for a in answers] == [200] * 6
    vectors = np.array([d["embedding"] for d in answers[-1].json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(vectors, embedder.encode(pair), atol=1e-5)


def test_serve_command_refuses_a_folder_that_is_not_an_export(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--model", str(tmp_path)])
    assert result.exit_code == 2 and "not an exported student" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "env"), [(["--api-key", ""], {}), (["--api-key", "a b"], {}),
                                           ([], {"DISTILL_API_KEY": ""})])  # fmt: skip
def test_serve_refuses_a_bad_key_in_one_line_before_loading_the_model(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    result = CliRunner().invoke(main, ["serve", "--model", str(tmp_path), *args], env=env)  # not an export
    assert result.exit_code == 2 and "API key" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_serve_takes_the_key_from_the_environment_and_gives_uvicorn_the_graceful_timeout(
    export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[tuple[FastAPI, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: runs.append((app, kwargs)))
    args = ["serve", "--model", str(export_dir), "--host", "0.0.0.0", "--graceful-timeout", "7", "--threads", "1"]
    result = CliRunner().invoke(main, args, env={"DISTILL_API_KEY": KEY})
    assert result.exit_code == 0 and "anyone who reaches" not in result.output
    [(app, kwargs)] = runs
    assert kwargs["timeout_graceful_shutdown"] == 7 and kwargs["host"] == "0.0.0.0"
    with TestClient(app) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers=bearer()).status_code == 200


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("::", True), ("127.0.0.1", False), ("::1", False),
                                              ("localhost", False)])  # fmt: skip
def test_serve_warns_when_a_server_without_a_key_listens_beyond_loopback(
    export_dir: Path, monkeypatch: pytest.MonkeyPatch, host: str, warned: bool
) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    monkeypatch.delenv("DISTILL_API_KEY", raising=False)
    result = CliRunner().invoke(main, ["serve", "--model", str(export_dir), "--host", host, "--threads", "1"])
    assert result.exit_code == 0 and ("anyone who reaches this port can use it" in result.output) == warned


def test_serve_and_embed_have_help_for_every_option() -> None:
    for command in ("serve", "embed"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "--model" in result.output and "--precision" in result.output
        options = [p for p in main.commands[command].params if isinstance(p, click.Option)]
        assert [o.name for o in options if not o.help] == []


def test_load_test_runs_the_cli_server_and_reports_each_level(export_dir: Path) -> None:
    report = load_test(export_dir, clients=(1, 4), requests_per_level=40, seconds_per_level=20, threads=1)
    assert [level["clients"] for level in report["levels"]] == [1, 4]
    for level in report["levels"]:
        assert level["requests"] == 40 and level["errors"] == 0
        assert 0 < level["p50_ms"] <= level["p99_ms"] and level["requests_per_s"] > 0
        assert 1 <= level["encode_calls"] <= 40
