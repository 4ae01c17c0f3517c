"""`make loadtest`: whether `distill serve` can be trusted in production, measured on loopback against the real
command (its own process, an API key through the environment), and failed on any mismatch.

    python -m eval.experiments.reliability --model runs/default/export/transformer --precision int8 [--short]

    fuzz         every odd or hostile request of `eval.experiments.fuzz` gets the status it should, errors in
                 OpenAI's JSON shape
    concurrency  16 clients send requests of 1-8 texts at once, one more client sends texts that are not valid
                 Unicode among good ones: every good request gets 200 and every vector equals the same text
                 embedded alone (by `OnnxEmbedder` in this process) to 1e-6; every bad one gets 400
    soak         the same traffic for `--soak-seconds` (300), the server's memory sampled; /metrics must count
                 what the clients saw
    body         a chunked body of `--body-mb` (512) MiB gets 413 while the server's memory grows by < 64 MB
    signals      SIGTERM with 16 requests in flight: all answered 200, exit status 0; SIGKILL under load, then a
                 new server on the same port answers at once with the same vectors

`--short` (CI, under a minute): 5 requests a client, a 10 s soak, a 64 MiB body.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import h11
import httpx
import numpy as np

from distill.errors import DistillError
from distill.runtime import OnnxEmbedder
from distill.runtime.serve import default_body_limit
from eval.experiments.fuzz import http, run_fuzz
from eval.experiments.loadtest import DEFAULT_TEXTS, Connection, served

logger = logging.getLogger(__name__)

TOLERANCE = 1e-6  # a vector from the service against the same text embedded alone
MEMORY_GROWTH_MB = 64  # the most a refused huge body may add to the server's memory
CLIENTS = 16
MAX_TEXTS = 8  # texts per request, 1 to this
BAD_TEXT = "abc \ud800 def"  # a lone surrogate: valid JSON, not Unicode text
LIMITS = {"max_batch": 256, "max_text_chars": 20000}  # `distill serve`'s defaults, which the fuzz set probes


def text_pool(size: int = 300, seed: int = 0) -> list[str]:
    """Texts of every length the service meets: 1 to 300 words from the load test's sentences, some with accents,
    symbols and emoji, an empty one and a blank one."""
    rng = random.Random(seed)
    words = " ".join(DEFAULT_TEXTS).split()
    extras = ["naïve café", "日本語のテキスト", "smile 😀", "x² + y² = z²", "C'est déjà l'été."]
    pool = ["", "   "]
    while len(pool) < size:
        share = rng.random()  # NOTE: most texts short, a tenth past the max length of most students
        length = rng.randint(1, 20) if share < 0.7 else rng.randint(21, 80) if share < 0.9 else rng.randint(81, 300)
        text = " ".join(rng.choice(words) for _ in range(length))
        pool.append(text if rng.random() > 0.1 else f"{text} {rng.choice(extras)}")
    return pool


class Traffic:
    """What many clients saw: requests by outcome, latencies, and the largest difference to the texts alone."""

    def __init__(self, reference: dict[str, np.ndarray]) -> None:
        self.reference = reference
        self.good = self.good_failed = self.bad = self.bad_wrong = self.rows = 0
        self.max_difference = 0.0
        self.latencies: list[float] = []
        self.failures: list[str] = []

    def summary(self, seconds: float) -> dict[str, Any]:
        ms = np.asarray(self.latencies) * 1000
        return {"good_requests": self.good, "good_failed": self.good_failed, "bad_requests": self.bad,
                "bad_not_400": self.bad_wrong, "vectors_checked": self.rows, "max_difference": self.max_difference,
                "seconds": round(seconds, 1), "requests_per_s": round(self.good / seconds, 1),
                "bad_per_s": round(self.bad / seconds, 1),
                "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
                "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
                "failures": self.failures[:10]}  # fmt: skip

    def check(self, texts: list[str], status: int, body: bytes, encoding: str) -> None:
        if status != 200:
            self.good_failed += 1
            self.failures.append(f"status {status}: {body[:120]!r}")
            return
        data = json.loads(body)["data"]
        for text, item in zip(texts, data, strict=True):
            vector = (np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") if encoding == "base64"
                      else np.asarray(item["embedding"], dtype=np.float32))  # fmt: skip
            self.max_difference = max(self.max_difference, float(np.abs(vector - self.reference[text]).max()))
            self.rows += 1


async def _client(url: str, key: str, traffic: Traffic, pool: list[str], rng: random.Random, *, bad: bool,
                  until: float, requests: int | None) -> None:  # fmt: skip
    connection, sent = Connection(url, key), 0
    while time.monotonic() < until and (requests is None or sent < requests):
        texts = [rng.choice(pool) for _ in range(rng.randint(1, MAX_TEXTS))]
        if bad:
            texts[rng.randrange(len(texts))] = BAD_TEXT
        encoding = rng.choice(["float", "base64"])
        began = time.perf_counter()
        try:
            status, body = await asyncio.wait_for(
                connection.post("/v1/embeddings", {"input": texts, "encoding_format": encoding}), 120
            )
        except (OSError, asyncio.TimeoutError, h11.ProtocolError) as e:
            await connection.close()
            status, body = 0, str(e).encode()
        sent += 1
        if bad:
            traffic.bad += 1
            traffic.bad_wrong += status != 400
        else:
            traffic.good += 1
            traffic.latencies.append(time.perf_counter() - began)
            traffic.check(texts, status, body, encoding)
    await connection.close()


async def run_traffic(url: str, key: str, reference: dict[str, np.ndarray], *, clients: int = CLIENTS,
                      seconds: float | None = None, requests: int | None = None) -> Traffic:  # fmt: skip
    """`clients` good clients and one bad one, each sending `requests` requests or for `seconds`."""
    traffic, pool = Traffic(reference), [t for t in reference]
    until = time.monotonic() + (seconds if seconds is not None else 3600)
    await asyncio.gather(*(
        _client(url, key, traffic, pool, random.Random(i), bad=i == clients, until=until, requests=requests)
        for i in range(clients + 1)))  # fmt: skip
    return traffic


def rss_mb(pid: int) -> float:
    """The resident memory of process `pid` in MB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise DistillError(f"no memory figure for process {pid}")


@contextlib.contextmanager
def sampling(pid: int, every: float) -> Iterator[list[tuple[float, float]]]:
    """Samples (seconds since the start, MB) of the process's memory every `every` seconds while the block runs."""
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    start = time.monotonic()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError, DistillError):
                samples.append((time.monotonic() - start, rss_mb(pid)))
            done.wait(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()
        with contextlib.suppress(OSError, DistillError):
            samples.append((time.monotonic() - start, rss_mb(pid)))


def metrics_counts(url: str, key: str) -> dict[int, int]:
    """Answers to POST /v1/embeddings by status, as the server's /metrics counts them."""
    text = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {key}"}, timeout=30).text
    counts: dict[int, int] = {}
    for line in text.splitlines():
        if line.startswith('distill_requests_total{endpoint="/v1/embeddings"'):
            status = int(line.split('status="')[1].split('"')[0])
            counts[status] = int(float(line.rsplit(" ", 1)[1]))
    return counts


def huge_body(url: str, key: str, pid: int, megabytes: int) -> dict[str, Any]:
    """Stream a chunked body of `megabytes` MiB, 1 MiB a chunk, until the server answers; its memory meanwhile."""
    host, port = url.removeprefix("http://").split(":")
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"x" * (1 << 20))
    sent, before = [0], rss_mb(pid)

    def send(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the server answered and closed its side
            sock.sendall(http("POST", "/v1/embeddings", key=key, length=False,
                              headers="transfer-encoding: chunked\r\n"))  # fmt: skip
            while sent[0] < megabytes:
                sock.sendall(chunk)
                sent[0] += 1
            sock.sendall(b"0\r\n\r\n")

    answer = b""
    with sampling(pid, 0.02) as samples, socket.create_connection((host, int(port)), timeout=120) as sock:
        sender = threading.Thread(target=send, args=(sock,), daemon=True)
        sender.start()
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in answer and (data := sock.recv(1 << 16)):
                answer += data
        sent_at_answer = sent[0]
        sock.shutdown(socket.SHUT_RDWR)
        sender.join(timeout=30)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    peak = max([mb for _, mb in samples] + [before])
    return {"status": status, "offered_mb": megabytes, "sent_mb_at_answer": sent_at_answer,
            "rss_before_mb": round(before, 1), "rss_peak_mb": round(peak, 1),
            "growth_mb": round(peak - before, 1)}  # fmt: skip


def _post_many(url: str, key: str, bodies: list[dict[str, Any]]) -> list[tuple[int, bytes]]:
    """Each body posted from its own thread at once; (status, body) of each, status 0 for no answer."""
    out: list[tuple[int, bytes]] = [(0, b"")] * len(bodies)

    def post(i: int) -> None:
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.post(f"{url}/v1/embeddings", json=bodies[i], timeout=120,
                                  headers={"authorization": f"Bearer {key}"})  # fmt: skip
            out[i] = (response.status_code, response.content)

    threads = [threading.Thread(target=post, args=(i,), daemon=True) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def _in_flight(url: str, key: str) -> int:
    text = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {key}"}, timeout=30).text
    return (
        int(next(line for line in text.splitlines() if line.startswith("distill_requests_in_flight ")).split()[1]) - 1
    )


def sigterm_under_load(model_dir: Path, precision: str, key: str, reference: dict[str, np.ndarray],
                       threads: int | None) -> dict[str, Any]:  # fmt: skip
    """SIGTERM while `CLIENTS` requests of 64 texts are in flight: every one answered 200 with the right vectors, and
    the server exits with status 0."""
    pool = sorted(reference, key=len)[-64:]  # the longest texts: requests that take a while
    bodies = [{"input": pool} for _ in range(CLIENTS)]
    with served(model_dir, precision=precision, threads=threads, api_key=key, stop_seconds=60,
                options=["--batch-size", "16"]) as (url, process):  # fmt: skip
        answers: list[tuple[int, bytes]] = []
        poster = threading.Thread(target=lambda: answers.extend(_post_many(url, key, bodies)), daemon=True)
        poster.start()
        deadline, in_flight = time.monotonic() + 10, 0
        while time.monotonic() < deadline and in_flight < CLIENTS and poster.is_alive():
            in_flight = max(in_flight, _in_flight(url, key))
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        poster.join()
        status = process.wait(timeout=60)
        seconds = time.monotonic() - began
    traffic = Traffic(reference)
    for code, body in answers:
        traffic.good += 1
        traffic.check(pool, code, body, "float")
    return {"in_flight_at_signal": in_flight, "answered_200": sum(code == 200 for code, _ in answers),
            "requests": len(answers), "max_difference": traffic.max_difference, "exit_status": status,
            "seconds_to_exit": round(seconds, 2)}  # fmt: skip


def sigkill_under_load(model_dir: Path, precision: str, key: str, reference: dict[str, np.ndarray],
                       threads: int | None) -> dict[str, Any]:  # fmt: skip
    """SIGKILL under load; then a new server on the same port must answer at once with the same vectors."""
    from eval.experiments.loadtest import _free_port

    port, pool = _free_port(), list(reference)[:32]
    with served(model_dir, precision=precision, threads=threads, api_key=key, port=port) as (url, process):
        answers: list[tuple[int, bytes]] = []
        poster = threading.Thread(target=lambda: answers.extend(
            _post_many(url, key, [{"input": pool}] * CLIENTS)), daemon=True)  # fmt: skip
        poster.start()
        time.sleep(0.05)
        process.kill()
        poster.join()
    began = time.monotonic()
    with served(model_dir, precision=precision, threads=threads, api_key=key, port=port) as (url, _):
        restart = time.monotonic() - began
        [(status, body)] = _post_many(url, key, [{"input": pool}])
    traffic = Traffic(reference)
    traffic.good += 1
    traffic.check(pool, status, body, "float")
    return {"requests_at_kill": len(answers), "answered_before_kill": sum(c == 200 for c, _ in answers),
            "no_answer": sum(c == 0 for c, _ in answers), "restart_seconds": round(restart, 2),
            "after_restart_status": status, "max_difference": traffic.max_difference}  # fmt: skip


def run(model_dir: str | Path, *, precision: str = "int8", short: bool = False, soak_seconds: float = 300,
        body_mb: int = 512, threads: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Every stage against `distill serve` of `model_dir`; the figures and, under "checks", each rule and whether
    it held."""
    model_dir, key = Path(model_dir), secrets.token_urlsafe(24)
    soak_seconds, body_mb = (10, 64) if short else (soak_seconds, body_mb)
    embedder = OnnxEmbedder(model_dir, precision=precision, threads=1)
    reference = {text: embedder.encode([text])[0] for text in text_pool()}  # each text alone
    report: dict[str, Any] = {"model": str(model_dir), "precision": precision, "short": short,
                              "cores": os.cpu_count(), "clients": CLIENTS}  # fmt: skip
    with served(model_dir, precision=precision, threads=threads, api_key=key) as (url, process):
        report["fuzz"] = run_fuzz(url, key, max_batch=LIMITS["max_batch"], max_text_chars=LIMITS["max_text_chars"],
                                  max_body_bytes=default_body_limit(**LIMITS))  # fmt: skip
        began = time.monotonic()
        traffic = asyncio.run(run_traffic(url, key, reference, requests=5 if short else 40))
        report["concurrency"] = traffic.summary(time.monotonic() - began)
        counted = metrics_counts(url, key)
        with sampling(process.pid, 2.0) as samples:
            began = time.monotonic()
            traffic = asyncio.run(run_traffic(url, key, reference, seconds=soak_seconds))
            report["soak"] = traffic.summary(time.monotonic() - began)
        after = metrics_counts(url, key)
        report["soak"]["metrics_200"] = after.get(200, 0) - counted.get(200, 0)
        report["soak"]["metrics_400"] = after.get(400, 0) - counted.get(400, 0)
        report["soak"]["memory_mb"] = _start_middle_end(samples)
        report["body"] = huge_body(url, key, process.pid, body_mb)
    report["sigterm"] = sigterm_under_load(model_dir, precision, key, reference, threads)
    report["sigkill"] = sigkill_under_load(model_dir, precision, key, reference, threads)
    report["checks"] = checks(report)
    return report


def _start_middle_end(samples: list[tuple[float, float]]) -> dict[str, float]:
    if not samples:
        return {}
    return {"start": round(samples[0][1], 1), "middle": round(samples[len(samples) // 2][1], 1),
            "end": round(samples[-1][1], 1), "peak": round(max(mb for _, mb in samples), 1)}  # fmt: skip


def checks(report: dict[str, Any]) -> dict[str, bool]:
    """Each rule of the benchmark and whether it held."""
    soak, memory = report["soak"], report["soak"].get("memory_mb", {})
    out = {"fuzz: every case as it should be": all(case["problem"] is None for case in report["fuzz"])}
    for stage in ("concurrency", "soak"):
        figures = report[stage]
        out[f"{stage}: every good request 200"] = figures["good_failed"] == 0 and figures["good_requests"] > 0
        out[f"{stage}: every bad request 400"] = figures["bad_not_400"] == 0 and figures["bad_requests"] > 0
        out[f"{stage}: every vector as the text alone (1e-6)"] = figures["max_difference"] <= TOLERANCE
    out["soak: /metrics counts what the clients saw"] = (soak["metrics_200"] == soak["good_requests"]
                                                        and soak["metrics_400"] == soak["bad_requests"])  # fmt: skip
    # NOTE: from the middle: the first half includes the allocators' warm-up under the heavier load
    out["soak: memory flat (end within 32 MB of the middle)"] = bool(memory) and memory["end"] - memory["middle"] < 32
    out["body: 413, memory grew < 64 MB"] = (report["body"]["status"] == 413
                                             and report["body"]["growth_mb"] < MEMORY_GROWTH_MB)  # fmt: skip
    term = report["sigterm"]
    out["sigterm: every request in flight answered 200"] = term["answered_200"] == term["requests"]
    # NOTE: uvicorn shuts down gracefully, then raises the signal again, so a clean stop exits by SIGTERM
    out["sigterm: a clean exit, the right vectors"] = (term["exit_status"] in (0, -signal.SIGTERM)
                                                      and term["max_difference"] <= TOLERANCE)  # fmt: skip
    kill = report["sigkill"]
    out["sigkill: a new server answers the same"] = (kill["after_restart_status"] == 200
                                                    and kill["max_difference"] <= TOLERANCE)  # fmt: skip
    return out


def print_report(report: dict[str, Any]) -> None:
    fuzz = report["fuzz"]
    click.echo(f"\n{report['model']} ({report['precision']}), loopback, {report['cores']} cores shared by server "
               f"and clients{', short form' if report['short'] else ''}")  # fmt: skip
    click.echo(f"fuzz: {sum(c['problem'] is None for c in fuzz)} of {len(fuzz)} requests answered as they should")
    for case in fuzz:
        if case["problem"]:
            click.echo(f"  FAILED {case['name']}: {case['problem']}")
    for stage in ("concurrency", "soak"):
        f = report[stage]
        click.echo(f"{stage}: {report['clients']} clients + 1 sending bad text, {f['seconds']} s, "
                   f"{f['requests_per_s']} good and {f['bad_per_s']} bad requests/s; good {f['good_requests']} "
                   f"({f['good_failed']} failed), "
                   f"bad {f['bad_requests']} ({f['bad_not_400']} not 400); {f['vectors_checked']} vectors, max "
                   f"difference to the text alone {f['max_difference']:.1e}; p50 {_ms(f['p50_ms'])}, "
                   f"p99 {_ms(f['p99_ms'])}")  # fmt: skip
    memory = report["soak"]["memory_mb"]
    click.echo(f"soak memory (MB): start {memory.get('start')}, middle {memory.get('middle')}, end "
               f"{memory.get('end')}, peak {memory.get('peak')}; /metrics 200s {report['soak']['metrics_200']}, "
               f"400s {report['soak']['metrics_400']}")  # fmt: skip
    body = report["body"]
    click.echo(f"body: {body['offered_mb']} MiB chunked -> {body['status']} after {body['sent_mb_at_answer']} MiB "
               f"sent; server memory {body['rss_before_mb']} -> peak {body['rss_peak_mb']} MB "
               f"(+{body['growth_mb']})")  # fmt: skip
    term, kill = report["sigterm"], report["sigkill"]
    click.echo(f"sigterm: {term['in_flight_at_signal']} in flight, {term['answered_200']} of {term['requests']} "
               f"answered 200, exit status {term['exit_status']} after {term['seconds_to_exit']} s")  # fmt: skip
    click.echo(f"sigkill: {kill['answered_before_kill']} of {kill['requests_at_kill']} answered before the kill, "
               f"{kill['no_answer']} without an answer; a new server on the port in {kill['restart_seconds']} s "
               f"answered {kill['after_restart_status']}")  # fmt: skip
    for rule, held in report["checks"].items():
        click.echo(f"  {'ok  ' if held else 'FAIL'} {rule}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False), help="An export folder.")
@click.option("--precision", type=click.Choice(["fp32", "int8"]), default="int8", show_default=True)
@click.option("--short", is_flag=True, help="The CI form: 5 requests a client, a 10 s soak, a 64 MiB body.")
@click.option("--soak-seconds", type=click.FloatRange(min=1), default=300, show_default=True,
              help="How long the soak sends traffic.")  # fmt: skip
@click.option("--body-mb", type=click.IntRange(min=1), default=512, show_default=True,
              help="MiB of the chunked body the server must refuse.")  # fmt: skip
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime threads in the server.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures here.")
def main(model_dir: str, precision: str, short: bool, soak_seconds: float, body_mb: int, threads: int | None,
         json_path: str | None) -> None:  # fmt: skip
    """Fuzz, correctness under concurrency, a soak, a huge body and signals against `distill serve`; exit 1 on any
    failed check."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        report = run(model_dir, precision=precision, short=short, soak_seconds=soak_seconds, body_mb=body_mb,
                     threads=threads)  # fmt: skip
    except DistillError as e:
        raise click.ClickException(str(e)) from e
    print_report(report)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
    if not all(report["checks"].values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
