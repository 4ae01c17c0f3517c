"""`python -m eval.experiments.loadtest`: requests/s and latency of `distill serve` on loopback, at several
concurrency levels.

The server runs in its own process, as in production (an API key required, given through the
environment, and stopped with SIGTERM); for each level, that many keep-alive
connections each send one-text requests back to back until `requests_per_level` requests are sent
or `seconds_per_level` pass. Latency is measured by the client, so it includes HTTP and JSON on both
sides; on a small machine the clients take CPU from the server too, so the figures are a floor on
what the service does with the machine to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import h11
import httpx
import numpy as np

from distill.errors import DistillError

logger = logging.getLogger(__name__)

DEFAULT_TEXTS = [
    "The cat sat on the mat.",
    "A dog barked at the mailman all morning.",
    "Stock markets fell sharply after the announcement of new tariffs on imported steel.",
    "The river flows through the old town and into the sea.",
    "She plays the violin in the city orchestra every Sunday evening.",
    "Rain is expected across the north of the country tomorrow.",
    "The committee approved the new budget on Tuesday after a long and heated debate about schools.",
    "He cooked pasta with garlic and fresh tomatoes.",
    "Scientists discovered a new species of frog in the forest.",
    "The train to London was delayed by twenty minutes because of a signal failure near Reading.",
    "Children played football in the park after school.",
    "The museum opened a new exhibition of modern art.",
]


def load_test(
    model_dir: str | Path,
    *,
    clients: Sequence[int] = (1, 8, 32),
    requests_per_level: int = 2000,
    seconds_per_level: float = 10.0,
    precision: str = "fp32",
    threads: int | None = None,
    texts: Sequence[str] | None = None,
    startup_seconds: float = 120.0,
) -> dict[str, Any]:
    """Serve `model_dir` on a free loopback port and measure each concurrency level in `clients`.

    Returns `{"model", "precision", "threads", "levels": [{"clients", "requests", "errors", "seconds",
    "requests_per_s", "p50_ms", "p99_ms", "encode_calls", "texts_per_encode"}, ...]}`; latencies are of
    the successful requests (None if there were none).
    """
    if not clients or min(clients) <= 0 or requests_per_level <= 0 or seconds_per_level <= 0:
        raise DistillError("clients, requests_per_level and seconds_per_level must be positive")
    texts = list(texts or DEFAULT_TEXTS)
    key = secrets.token_urlsafe(24)
    with running_server(model_dir, precision=precision, threads=threads, startup_seconds=startup_seconds,
                        api_key=key) as url:  # fmt: skip
        levels = [asyncio.run(_level(url, key, n, texts, requests_per_level, seconds_per_level)) for n in clients]
    return {"model": str(model_dir), "precision": precision, "threads": threads, "levels": levels}


@contextlib.contextmanager
def running_server(
    model_dir: str | Path, *, precision: str = "fp32", threads: int | None = None, startup_seconds: float = 120.0,
    api_key: str | None = None, stop_seconds: int = 10, workers: int = 1,
) -> Iterator[str]:  # fmt: skip
    """Run `distill serve` in a subprocess on a free loopback port; yield its base URL once /health answers.

    On exit the server gets SIGTERM and `stop_seconds` to shut down gracefully; if it needs more, it is
    killed and, unless the block raised already, DistillError says so.
    """
    with served(model_dir, precision=precision, threads=threads, startup_seconds=startup_seconds, api_key=api_key,
                stop_seconds=stop_seconds, workers=workers) as (url, _):  # fmt: skip
        yield url


@contextlib.contextmanager
def served(
    model_dir: str | Path, *, precision: str = "fp32", threads: int | None = None, startup_seconds: float = 120.0,
    api_key: str | None = None, stop_seconds: int = 10, workers: int = 1, port: int | None = None,
    options: Sequence[str] = (),
) -> Iterator[tuple[str, subprocess.Popen]]:  # fmt: skip
    """`running_server`, yielding the server process too (`options`: more flags of `distill serve`); a server the
    block already stopped is left as it is."""
    port = port or _free_port()
    command = [sys.executable, "-m", "distill.cli", "serve", "--model", str(model_dir), "--port", str(port),
               "--precision", precision, "--no-access-log", "--graceful-timeout", str(stop_seconds // 2),
               "--workers", str(workers), *options]  # fmt: skip
    if threads:
        command += ["--threads", str(threads)]
    env = {key: value for key, value in os.environ.items() if key != "DISTILL_API_KEY"}
    env.update({"DISTILL_API_KEY": api_key} if api_key else {})  # NOTE: not a flag, which `ps` would show
    url = f"http://127.0.0.1:{port}"
    forced = False
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_until_healthy(url, process, log, startup_seconds)
            yield url, process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=stop_seconds)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    forced = True
    if forced:
        raise DistillError(f"the server did not stop within {stop_seconds} s of SIGTERM")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_healthy(url: str, process: subprocess.Popen, log: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            tail = " | ".join(line.strip() for line in log.read().splitlines()[-3:])
            raise DistillError(f"the server exited with status {process.returncode}: {tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise DistillError(f"the server did not answer {url}/health within {seconds:.0f} s")


async def _level(url: str, api_key: str | None, clients: int, texts: list[str], max_requests: int,
                 seconds: float) -> dict[str, Any]:  # fmt: skip
    """One concurrency level: `clients` connections sending one-text requests back to back."""
    connections = [Connection(url, api_key) for _ in range(clients)]
    await asyncio.gather(*(c.post("/v1/embeddings", {"input": texts[0]}) for c in connections))  # connect, warm up
    before = json.loads((await connections[0].request("GET", "/health"))[1])["batching"]
    latencies: list[float] = []
    sent = errors = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def one_client(connection: Connection) -> None:
        nonlocal sent, errors
        while sent < max_requests and time.perf_counter() < deadline:
            text = texts[sent % len(texts)]
            sent += 1
            began = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(connection.post("/v1/embeddings", {"input": text}), 60)
                ok = status == 200 and len(json.loads(body)["data"]) == 1
            except (OSError, asyncio.TimeoutError, h11.ProtocolError, ValueError, KeyError):
                await connection.close()  # the next request opens a fresh connection
                ok = False
            if ok:
                latencies.append(time.perf_counter() - began)
            else:
                errors += 1

    await asyncio.gather(*(one_client(c) for c in connections))
    elapsed = time.perf_counter() - start
    after = json.loads((await connections[0].request("GET", "/health"))[1])["batching"]
    for connection in connections:
        await connection.close()
    calls = after["encode_calls"] - before["encode_calls"]
    ms = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "requests": sent,
        "errors": errors,
        "seconds": elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "encode_calls": calls,
        "texts_per_encode": (after["texts"] - before["texts"]) / calls if calls else None,
    }


class Connection:
    """One keep-alive HTTP/1.1 client connection: h11 (the HTTP library under httpx and uvicorn) on asyncio streams.

    NOTE: not httpx.AsyncClient: it spends several times more CPU per request than the service does
    (encode/httpx#3215; here 240 against 1200 requests/s at 32 clients), so through it a load test
    measures the client rather than the server.
    """

    def __init__(self, url: str, api_key: str | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.auth = [("authorization", f"Bearer {api_key}")] if api_key else []
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._http = h11.Connection(h11.CLIENT)

    async def post(self, path: str, payload: Any) -> tuple[int, bytes]:
        return await self.request("POST", path, json.dumps(payload).encode())

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """(status, body) of one request on this connection, opened (again) when needed."""
        if self._streams is None or self._http.our_state is not h11.IDLE:
            await self.close()
            self._streams = await asyncio.open_connection(self.host, self.port)
            self._http = h11.Connection(h11.CLIENT)
        reader, writer = self._streams
        headers = [("host", self.host), ("content-type", "application/json"), ("content-length", str(len(body))),
                   *self.auth]  # fmt: skip
        writer.write(self._http.send(h11.Request(method=method, target=path, headers=headers))
                     + self._http.send(h11.Data(data=body)) + self._http.send(h11.EndOfMessage()))  # fmt: skip
        status, chunks = 0, []
        while True:
            event = self._http.next_event()
            if event is h11.NEED_DATA:
                self._http.receive_data(await reader.read(1 << 16))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("the server closed the connection")
        if self._http.our_state is h11.DONE and self._http.their_state is h11.DONE:
            self._http.start_next_cycle()
        return status, b"".join(chunks)

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def print_report(report: dict[str, Any]) -> None:
    click.echo(f"\n{report['model']} ({report['precision']}, threads {report['threads'] or 'default'}), loopback")
    click.echo(
        f"{'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'texts/call':>10}"
    )
    for level in report["levels"]:
        click.echo(
            f"{level['clients']:>7} {level['requests']:>8} {level['errors']:>6} {level['requests_per_s']:>8.1f} "
            f"{_fmt(level['p50_ms'], 7, 2)} {_fmt(level['p99_ms'], 7, 2)} {_fmt(level['texts_per_encode'], 10, 1)}"
        )


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False), help="An export folder.")
@click.option("--clients", default="1,8,32", show_default=True, help="Comma-separated concurrency levels.")
@click.option("--requests", "requests_per_level", default=2000, show_default=True, help="Most requests per level.")
@click.option("--seconds", "seconds_per_level", default=10.0, show_default=True, help="Most seconds per level.")
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime threads in the server.")
def main(model_dir: str, clients: str, requests_per_level: int, seconds_per_level: float, precision: str,
         threads: int | None) -> None:  # fmt: skip
    """Load-test `distill serve` on loopback: requests/s and p50/p99 latency at each concurrency level."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        levels = tuple(int(n) for n in clients.split(","))
        report = load_test(model_dir, clients=levels, requests_per_level=requests_per_level,
                           seconds_per_level=seconds_per_level, precision=precision, threads=threads)  # fmt: skip
    except ValueError as e:
        raise click.ClickException(f"--clients must be comma-separated integers, not {clients!r}") from e
    except DistillError as e:
        raise click.ClickException(str(e)) from e
    print_report(report)


if __name__ == "__main__":
    main()
