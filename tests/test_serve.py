"""The HTTP service: OpenAI-shaped answers equal to the runtime's vectors, clear errors, batching, a real server."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from transformers import BertTokenizerFast

import distill.runtime.serve
from distill.cli import main
from distill.runtime import OnnxEmbedder
from distill.runtime.serve import Batcher, create_app
from eval.loadtest import load_test
from tests.conftest import SENTENCES, export_tiny_static

MAX_BATCH, MAX_CHARS = 8, 300


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: BertTokenizerFast) -> Path:
    return export_tiny_static(tmp_path_factory.mktemp("export") / "static", tokenizer)


@pytest.fixture(scope="module")
def embedder(export_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder(export_dir, threads=1)


@pytest.fixture()
def client(embedder: OnnxEmbedder) -> Iterator[TestClient]:
    app = create_app(embedder, model_name="tiny-static", max_batch=MAX_BATCH, max_text_chars=MAX_CHARS)
    with TestClient(app) as client:  # NOTE: `with` runs the lifespan, which starts the batching worker
        yield client


class SlowEmbedder:
    """The real embedder, slowed down (so requests pile up while it works) or made to fail on one text."""

    def __init__(self, embedder: OnnxEmbedder, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.embedder, self.delay, self.fail_on = embedder, delay, fail_on
        self.precision, self.dim = embedder.precision, embedder.dim
        self.calls: list[int] = []  # texts per model call

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        if self.fail_on in texts:
            raise RuntimeError("the model broke")
        return self.embedder.token_ids(texts)

    def encode_ids(self, ids: Sequence[Sequence[int]], batch_size: int = 32) -> np.ndarray:
        self.calls.append(len(ids))
        time.sleep(self.delay)
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
    calls: list[list[str]] = []

    def work(texts: list[str]) -> tuple[np.ndarray, list[int]]:
        calls.append(texts)
        return np.zeros((len(texts), 2), dtype=np.float32), [1] * len(texts)

    async def scenario() -> int:
        batcher = Batcher(work)
        batcher.start()
        gone = asyncio.create_task(batcher.submit(["gone"]))
        kept = asyncio.create_task(batcher.submit(["kept"]))
        await asyncio.sleep(0)  # both are queued
        gone.cancel()  # the client went away
        _, tokens = await kept
        await batcher.stop()
        return tokens

    assert asyncio.run(scenario()) == 1
    assert calls == [["kept"]]


def test_a_real_server_on_loopback(embedder: OnnxEmbedder) -> None:
    app = create_app(embedder, model_name="tiny-static")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        response = httpx.post(f"{url}/v1/embeddings", json={"input": SENTENCES[:3]})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        np.testing.assert_allclose(vectors_of(response), embedder.encode(SENTENCES[:3]), atol=1e-6)
        bad = httpx.post(f"{url}/v1/embeddings", content=b"{", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "error" in bad.json()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive()


def test_serve_command_refuses_a_folder_that_is_not_an_export(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--model", str(tmp_path)])
    assert result.exit_code == 2 and "not an exported student" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_serve_and_embed_have_help() -> None:
    for command in ("serve", "embed"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "--model" in result.output and "--precision" in result.output


def test_load_test_runs_the_cli_server_and_reports_each_level(export_dir: Path) -> None:
    report = load_test(export_dir, clients=(1, 4), requests_per_level=40, seconds_per_level=20, threads=1)
    assert [level["clients"] for level in report["levels"]] == [1, 4]
    for level in report["levels"]:
        assert level["requests"] == 40 and level["errors"] == 0
        assert 0 < level["p50_ms"] <= level["p99_ms"] and level["requests_per_s"] > 0
        assert 1 <= level["encode_calls"] <= 40
