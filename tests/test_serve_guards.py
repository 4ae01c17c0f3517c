"""The service under bad input: a bad text fails only its own request, batches are bounded, bodies and headers are
bounded as they arrive, a shutdown past its timeout answers 503 JSON, and a damaged export fails in one line."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from fastapi import FastAPI

from distill.cli.commands import main
from distill.errors import DistillError
from distill.runtime import MODEL_FILES, TOKENIZER_FILE, OnnxEmbedder, UntokenizableText
from distill.runtime.serve import create_app, default_body_limit
from tests.conftest import SENTENCES
from tests.test_serve import SlowEmbedder, on_loopback, vectors_of

SURROGATE = "abc \ud800 def"  # valid JSON as "abc \\ud800 def", not valid Unicode text


async def _post_all(app: FastAPI, bodies: list[bytes]) -> list[httpx.Response]:
    """Every body posted to /v1/embeddings at once, through the app's lifespan."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {"content-type": "application/json"}
            return await asyncio.gather(*(client.post("/v1/embeddings", content=b, headers=headers) for b in bodies))


def _body(texts: str | list[str]) -> bytes:
    return json.dumps({"input": texts}).encode()  # NOTE: json.dumps escapes a lone surrogate as \ud800


@pytest.mark.parametrize(("texts", "where"), [(SURROGATE, "input"), (["fine", SURROGATE], "input[1]")])
def test_a_lone_surrogate_is_a_400_that_names_the_input(embedder: OnnxEmbedder, texts: str | list[str],
                                                         where: str) -> None:  # fmt: skip
    [response] = asyncio.run(_post_all(create_app(embedder, model_name="m"), [_body(texts)]))
    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "invalid_text" and error["param"] == "input"
    assert error["message"].startswith(f"{where} is not valid Unicode text") and "U+D800" in error["message"]


def test_bad_text_in_one_clients_requests_never_changes_another_clients_answer(embedder: OnnxEmbedder) -> None:
    slow = SlowEmbedder(embedder, delay=0.02)  # requests pile up and share model calls
    app = create_app(slow, model_name="m", batch_size=64)
    good = [SENTENCES[i % 12 : i % 12 + 2] for i in range(16)]
    bodies = [_body(texts) for texts in good] + [_body([SENTENCES[0], SURROGATE])] * 8
    responses = asyncio.run(_post_all(app, bodies))
    assert [r.status_code for r in responses] == [200] * 16 + [400] * 8
    for texts, response in zip(good, responses, strict=False):
        np.testing.assert_array_equal(vectors_of(response), embedder.encode(texts))
    assert max(slow.calls) > 2  # good requests did share model calls


def test_the_runtime_names_the_text_it_cannot_tokenize(embedder: OnnxEmbedder) -> None:
    with pytest.raises(
        UntokenizableText, match=r"text 2 cannot be tokenized: .*lone surrogate \(U\+D800\) at character 4"
    ):
        embedder.encode(["fine", "also fine", SURROGATE])
    with pytest.raises(UntokenizableText, match=r"text 0 .* of type int, not a string"):
        embedder.encode([3])  # type: ignore[list-item]


def test_a_text_the_tokenizer_refuses_fails_its_own_request_only(embedder: OnnxEmbedder) -> None:
    slow = SlowEmbedder(embedder, untokenizable="poison")
    responses = asyncio.run(_post_all(create_app(slow, model_name="m"), [_body(["ok", "poison"]), _body(["ok"])]))
    assert [r.status_code for r in responses] == [400, 200]
    assert responses[0].json()["error"]["message"].startswith("input[1] cannot be tokenized: the tokenizer broke")


def test_a_model_call_that_fails_is_run_again_request_by_request(embedder: OnnxEmbedder) -> None:
    slow = SlowEmbedder(embedder, delay=0.05, fail_on="boom")
    app = create_app(slow, model_name="m", batch_size=64)
    inputs = [[SENTENCES[i]] for i in range(6)]
    responses = asyncio.run(
        _post_all(app, [_body(x) for x in inputs[:3]] + [_body(["boom"])] + [_body(x) for x in inputs[3:]])
    )
    assert [r.status_code for r in responses] == [200, 200, 200, 500, 200, 200, 200]
    for texts, response in zip(inputs, responses[:3] + responses[4:], strict=True):
        np.testing.assert_array_equal(vectors_of(response), embedder.encode(texts))
    assert app.state.batcher.stats.retried_batches >= 1


def test_batch_size_bounds_every_model_call_and_splits_a_large_request(embedder: OnnxEmbedder) -> None:
    slow = SlowEmbedder(embedder, delay=0.02)
    app = create_app(slow, model_name="m", batch_size=4)
    inputs = [SENTENCES[:10], SENTENCES[2:5], SENTENCES[5:8], [SENTENCES[9]]]
    responses = asyncio.run(_post_all(app, [_body(x) for x in inputs]))
    for texts, response in zip(inputs, responses, strict=True):
        np.testing.assert_array_equal(vectors_of(response), embedder.encode(texts))
    assert max(slow.calls) == 4 and sum(slow.calls) == 17
    assert app.state.batcher.stats.largest_batch == 4


def test_the_default_body_limit_fits_the_largest_request_and_stays_small() -> None:
    largest = json.dumps({"input": ["\u00e9" * 20000] * 256}).encode()  # every character escaped as \u00e9
    assert len(largest) <= default_body_limit(256, 20000) < 32 * 2**20


def _raw(url: str, request: bytes, *, chunks: int = 0, chunk: bytes = b"", timeout: float = 10) -> tuple[int, bytes]:
    """Send `request` (and then up to `chunks` chunks of a chunked body) on a raw socket; the status and the body
    of the answer, read until the server closes the connection or the answer is whole."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        sock.setblocking(False)
        sent = 0
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(1 << 16)
                if not data:
                    break
                received += data
                head, _, body = received.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ]
                if length and len(body) >= length[0]:
                    break
            except BlockingIOError:
                if sent < chunks:
                    try:
                        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        sent += 1
                    except OSError:  # the server closed its side after it answered
                        sent = chunks
                else:
                    time.sleep(0.005)
    status = int(received.split(b" ", 2)[1])
    return status, received.partition(b"\r\n\r\n")[2]


def _head(path: str, *, extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n{extra}".encode()


def test_a_chunked_body_past_the_limit_gets_413_without_being_read(embedder: OnnxEmbedder) -> None:
    app = create_app(embedder, model_name="m", max_body_bytes=64 * 1024)
    with on_loopback(app) as (url, _, _):
        request = _head("/v1/embeddings", extra="transfer-encoding: chunked\r\n\r\n")
        status, body = _raw(url, request, chunks=10_000, chunk=b"x" * 4096)  # 40 MB offered
        assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"
        small = b'{"input": ["a"]}'
        status, body = _raw(url, _head("/v1/embeddings", extra="transfer-encoding: chunked\r\n\r\n")
                            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small))  # fmt: skip
        assert status == 200 and len(json.loads(body)["data"]) == 1


@pytest.mark.parametrize(
    ("extra", "body", "status", "code"),
    [
        ("content-encoding: gzip\r\n", gzip.compress(b'{"input": ["a"]}'), 415, "unsupported_encoding"),
        ("x-padding: " + "p" * 20000 + "\r\n", b'{"input": ["a"]}', 431, "headers_too_large"),
        ("", b"x" * 70000, 413, "body_too_large"),
    ],
)
def test_compressed_bodies_and_large_heads_are_refused_in_json(
    embedder: OnnxEmbedder, extra: str, body: bytes, status: int, code: str
) -> None:
    app = create_app(embedder, model_name="m", max_body_bytes=64 * 1024)
    with on_loopback(app) as (url, _, _):
        answer = _raw(url, _head("/v1/embeddings", extra=f"{extra}content-length: {len(body)}\r\n\r\n") + body)
    assert answer[0] == status and json.loads(answer[1])["error"]["code"] == code


def test_a_shutdown_past_its_timeout_answers_what_is_left_with_503_json(embedder: OnnxEmbedder) -> None:
    slow = SlowEmbedder(embedder, delay=1.0)
    app = create_app(slow, model_name="m", batch_size=1)
    with on_loopback(app, timeout_graceful_shutdown=1) as (url, server, thread), ThreadPoolExecutor(4) as pool:
        posts = [pool.submit(httpx.post, f"{url}/v1/embeddings", json={"input": s}, timeout=30) for s in SENTENCES[:4]]
        while app.state.metrics.in_flight < 4 or not slow.calls:
            time.sleep(0.01)
        server.should_exit = True  # what uvicorn does on SIGTERM: four one-second calls outlast the 1 s timeout
        responses = [post.result() for post in posts]
        thread.join(timeout=10)
    assert {r.status_code for r in responses} <= {200, 503} and 503 in {r.status_code for r in responses}
    for response in responses:
        if response.status_code == 503:
            assert response.json()["error"] == {"message": "the server is shutting down", "type": "server_error",
                                                "param": None, "code": None}  # fmt: skip


def _damage(source: Path, target: Path, file: str, how: str) -> Path:
    import shutil

    shutil.copytree(source, target)
    data = (source / file).read_bytes()
    (target / file).write_bytes(b"" if how == "empty" else data[: len(data) // 2])
    return target


DAMAGES = [(MODEL_FILES["fp32"], "truncated"), (MODEL_FILES["int8"], "empty"), (MODEL_FILES["int8"], "truncated"),
           (TOKENIZER_FILE, "truncated")]  # fmt: skip


@pytest.mark.parametrize(("file", "how"), DAMAGES)
def test_a_damaged_export_fails_in_one_line_naming_the_file(
    export_dir: Path, tmp_path: Path, file: str, how: str
) -> None:
    damaged = _damage(export_dir, tmp_path / "damaged", file, how)
    precision = "int8" if file == MODEL_FILES["int8"] else "fp32"
    with pytest.raises(DistillError, match=f"{file}' is not a valid .*write it again with `distill export`"):
        OnnxEmbedder(damaged, precision=precision)
    (tmp_path / "texts.txt").write_text("a text\n")
    for command in (["serve", "--model", str(damaged)],
                    ["embed", "--model", str(damaged), "--input", str(tmp_path / "texts.txt"),
                     "--output", str(tmp_path / "out.npy")]):  # fmt: skip
        result = CliRunner().invoke(main, [*command, "--precision", precision])
        assert result.exit_code == 2 and file in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
