"""`distill serve` as its users call it: the `openai` Python client pointed at a real `distill serve` process, with
and without an API key, its vectors checked against `OnnxEmbedder` on the same export."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from distill.runtime import OnnxEmbedder
from tests.conftest import SENTENCES

openai = pytest.importorskip("openai")

ROOT = Path(__file__).parents[1]
KEY = "s3cret-key"


@contextlib.contextmanager
def distill_serve(model: Path, api_key: str | None) -> Iterator[str]:
    """`distill serve --model model` in its own process on a free loopback port; its base URL until it is stopped."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "DISTILL_API_KEY"} | {"PYTHONPATH": str(ROOT)}
    if api_key is not None:
        env["DISTILL_API_KEY"] = api_key
    command = [sys.executable, "-m", "distill.cli", "serve", "--model", str(model), "--port", str(port),
               "--threads", "1", "--no-access-log"]  # fmt: skip
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError(
                f"distill serve did not start: {process.stderr.read().decode() if process.stderr else ''}"
            )
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module", params=[None, KEY], ids=["open", "with-key"])
def client(request: pytest.FixtureRequest, export_dir: Path) -> Iterator[openai.OpenAI]:
    """The client of a server started without a key (any key the client sends is accepted) or with `KEY`."""
    with distill_serve(export_dir, request.param) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=request.param or "unused", max_retries=0)


def vectors(response: object) -> np.ndarray:
    return np.array([d.embedding for d in response.data], dtype=np.float32)


def test_models_list_names_the_one_model_served(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["tiny-static"]


def test_one_text_gives_the_runtimes_vector(client: openai.OpenAI, embedder: OnnxEmbedder) -> None:
    response = client.embeddings.create(input=SENTENCES[0], model="tiny-static")
    assert response.model == "tiny-static" and len(response.data) == 1
    np.testing.assert_allclose(vectors(response), embedder.encode(SENTENCES[:1]), atol=1e-6)
    assert response.usage.prompt_tokens == len(embedder.token_ids(SENTENCES[:1])[0])


def test_many_texts_come_back_in_order(client: openai.OpenAI, embedder: OnnxEmbedder) -> None:
    texts = [*SENTENCES, "short", "ünïcödé ✓"]
    response = client.embeddings.create(input=texts, model="tiny-static")
    assert [d.index for d in response.data] == list(range(len(texts)))
    np.testing.assert_allclose(vectors(response), embedder.encode(texts), atol=1e-6)


def test_base64_decodes_to_the_same_float32_vectors(client: openai.OpenAI, embedder: OnnxEmbedder) -> None:
    response = client.embeddings.create(input=SENTENCES[:3], model="tiny-static", encoding_format="base64")
    decoded = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in response.data])
    np.testing.assert_array_equal(decoded, embedder.encode(SENTENCES[:3]))


def test_dimensions_is_the_models_own_or_a_clear_refusal(client: openai.OpenAI, embedder: OnnxEmbedder) -> None:
    """An export without the teacher's basis (this one) gives its own size only: that is accepted, a shorter one is a
    400 the client raises with the server's code (with a basis, tests/test_shorter_vectors.py)."""
    same = client.embeddings.create(input=SENTENCES[:2], model="tiny-static", dimensions=embedder.dim)
    np.testing.assert_allclose(vectors(same), embedder.encode(SENTENCES[:2]), atol=1e-6)
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(input=SENTENCES[:2], model="tiny-static", dimensions=embedder.dim // 2)
    assert refused.value.code == "unsupported_dimensions"


def test_a_wrong_key_is_refused_by_a_server_with_a_key(export_dir: Path) -> None:
    with distill_serve(export_dir, KEY) as url:
        wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong-key", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:
            wrong.embeddings.create(input="a text", model="tiny-static")
        assert refused.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
