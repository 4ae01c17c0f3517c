"""The odd and hostile requests of the reliability benchmark (`eval.experiments.reliability`), sent as raw bytes on a
socket so that nothing a client library would refuse to send is left out: bad JSON and types, invalid Unicode,
texts at and past the limits, huge, chunked and compressed bodies, large heads, the API key, unknown routes and
methods. Each case names the statuses the service may answer; an error from the app must be OpenAI's JSON shape.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

EMBEDDINGS = "/v1/embeddings"


@dataclass(frozen=True)
class Case:
    """One request and what the service may answer it."""

    name: str
    request: bytes  # the request as it goes on the wire (head, and the body unless chunks follow)
    statuses: tuple[int, ...]
    json_error: bool = True  # an error answer must be {"error": {...}} (False: the HTTP parser answers, not the app)
    chunks: int = 0  # after `request`, this many chunks of a chunked body
    chunk_bytes: int = 0
    texts: int | None = None  # a 200 from /v1/embeddings must hold this many vectors


def http(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    key: str | None,
    headers: str = "",
    content_type: str | None = "application/json",
    length: bool = True,
    version: str = "1.1",
) -> bytes:
    """One request as bytes: the head (with the key, the content type and length unless told otherwise), then `body`."""
    head = f"{method} {path} HTTP/{version}\r\nhost: localhost\r\n"
    head += f"authorization: Bearer {key}\r\n" if key else ""
    head += f"content-type: {content_type}\r\n" if content_type else ""
    head += f"content-length: {len(body)}\r\n" if length else ""
    return (head + headers + "\r\n").encode("latin-1") + body


def cases(key: str, *, max_batch: int, max_text_chars: int, max_body_bytes: int) -> list[Case]:
    """The fuzz set for a service with the API key `key` and these limits."""

    def post(body: bytes | str, statuses: tuple[int, ...], texts: int | None = None, **options: Any) -> tuple:
        data = body.encode() if isinstance(body, str) else body
        return http("POST", EMBEDDINGS, data, key=key, **options), statuses, texts

    def embed(texts: Any, statuses: tuple[int, ...] = (200,), count: int | None = None) -> tuple:
        # NOTE: json.dumps escapes every non-ASCII character, a lone surrogate included, as \uXXXX
        return post(json.dumps({"input": texts}), statuses, count if count is not None else _count(texts))

    chunked = http("POST", EMBEDDINGS, key=key, length=False, headers="transfer-encoding: chunked\r\n")
    small = b'{"input": ["a chunked body"]}'
    table: list[tuple[str, tuple]] = [
        ("json: unterminated", post('{"input": ["a"', (400,))),
        ("json: empty body", post("", (400,))),
        ("json: a list, not an object", post('["a", "b"]', (400,))),
        ("json: a bare string", post('"a text"', (400,))),
        ("json: null", post("null", (400,))),
        ("json: trailing garbage", post('{"input": "a"} tail', (400,))),
        ("json: bytes that are not UTF-8", post(b'{"input": "\xff\xfe\xfa"}', (400,))),
        ("json: nested 100,000 deep", post('{"input": ' + "[" * 100_000 + "]" * 100_000 + "}", (400,))),
        ("json: NaN", post('{"input": "a", "dimensions": NaN}', (400,))),
        ("type: input a number", post('{"input": 42}', (400,))),
        ("type: input null", post('{"input": null}', (400,))),
        ("type: input an object", post('{"input": {"text": "a"}}', (400,))),
        ("type: a number in the list", post('{"input": ["a", 2]}', (400,))),
        ("type: lists in the list", post('{"input": [["a"], ["b"]]}', (400,))),
        ("type: booleans", post('{"input": [true, false]}', (400,))),
        ("type: no input", post('{"text": "a"}', (400,))),
        ("type: encoding_format hex", post('{"input": "a", "encoding_format": "hex"}', (400,))),
        ("type: dimensions a string", post('{"input": "a", "dimensions": "all"}', (400,))),
        ("type: dimensions -1", post('{"input": "a", "dimensions": -1}', (400,))),
        ("type: model a number", post('{"input": "a", "model": 7}', (400,))),
        ("unicode: a lone high surrogate", embed("abc \ud800 def", (400,))),
        ("unicode: a lone low surrogate in a list", embed(["fine", "x\udfff"], (400,))),
        ("unicode: a reversed pair", embed(["\udc00\ud800"], (400,))),
        ("unicode: a pair (an emoji) as escapes", embed(["smile \U0001f600"])),
        ("unicode: NUL and control characters", embed(["a\u0000b\u0007c\u001b[31m"])),
        ("unicode: BOM and zero-width characters", embed(["\ufeff\u200b\u200d text"])),
        ("unicode: right-to-left and combining marks", embed(["\u05e9\u05dc\u05d5\u05dd e\u0301\u0301\u0301"])),
        ("unicode: UTF-8 sent raw", post('{"input": ["naïve café ✓ 日本語"]}', (200,), 1)),
        ("text: empty", embed([""])),
        ("text: whitespace only", embed([" \t\n "])),
        ("text: at the character limit", embed(["w " * (max_text_chars // 2)])),
        ("text: one past the character limit", embed(["x" * (max_text_chars + 1)], (413,))),
        ("text: as many texts as allowed", embed(["t"] * max_batch)),
        ("text: one text too many", embed(["t"] * (max_batch + 1), (413,))),
        ("text: an empty list", embed([])),
        (
            "body: Content-Length past the limit, no body",
            (
                http("POST", EMBEDDINGS, key=key, length=False, headers=f"content-length: {max_body_bytes + 1}\r\n"),
                (413,),
                None,
            ),
        ),
        (
            "body: Content-Length not a number",
            (http("POST", EMBEDDINGS, b"{}", key=key, length=False, headers="content-length: ten\r\n"), (400,), None),
        ),
        (
            "body: Content-Length and chunked both",
            (http("POST", EMBEDDINGS, b"0\r\n\r\n", key=key, headers="transfer-encoding: chunked\r\n"), (400,), None),
        ),
        ("body: chunked, small", (chunked + b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small), (200,), 1)),
        ("encoding: gzip", post(gzip.compress(b'{"input": ["a"]}'), (415,), headers="content-encoding: gzip\r\n")),
        (
            "encoding: deflate",
            post(zlib.compress(b'{"input": ["a"]}'), (415,), headers="content-encoding: deflate\r\n"),
        ),
        ("encoding: identity", post('{"input": ["a"]}', (200,), 1, headers="content-encoding: identity\r\n")),
        ("content type: text/plain", post('{"input": ["a"]}', (200, 400), 1, content_type="text/plain")),
        ("content type: none", post('{"input": ["a"]}', (200, 400), 1, content_type=None)),
        ("head: a 20 KB header", post('{"input": ["a"]}', (431,), headers="x-pad: " + "p" * 20_000 + "\r\n")),
        (
            "head: 300 small headers",
            post('{"input": ["a"]}', (200,), 1, headers="".join(f"x-h{i}: v\r\n" for i in range(300))),
        ),
        ("auth: no key", (http("POST", EMBEDDINGS, b'{"input": "a"}', key=None), (401,), None)),
        ("auth: a wrong key", (http("POST", EMBEDDINGS, b'{"input": "a"}', key=key + "x"), (401,), None)),
        (
            "auth: the Basic scheme",
            (
                http("POST", EMBEDDINGS, b'{"input": "a"}', key=None, headers=f"authorization: Basic {key}\r\n"),
                (401,),
                None,
            ),
        ),
        ("auth: GET /health needs none", (http("GET", "/health", key=None), (200,), None)),
        ("auth: GET /metrics needs it", (http("GET", "/metrics", key=None), (401,), None)),
        ("route: GET on POST /v1/embeddings", (http("GET", EMBEDDINGS, key=key), (405,), None)),
        ("route: PUT /v1/embeddings", (http("PUT", EMBEDDINGS, b'{"input": "a"}', key=key), (405,), None)),
        ("route: DELETE /v1/embeddings", (http("DELETE", EMBEDDINGS, key=key), (405,), None)),
        ("route: an unknown path", (http("POST", "/v2/embeddings", b'{"input": "a"}', key=key), (404,), None)),
        ("route: /v1/models/another", (http("GET", "/v1/models/another", key=key), (404,), None)),
        ("route: /v1/classify", (http("POST", "/v1/classify", b'{"input": "a"}', key=key), (200, 404), None)),
        ("http: HTTP/1.0", (http("POST", EMBEDDINGS, b'{"input": "a"}', key=key, version="1.0"), (200,), 1)),
    ]
    out = [Case(name, request, statuses, texts=texts) for name, (request, statuses, texts) in table]
    parser = ("body: Content-Length not a number", "body: Content-Length and chunked both")
    out = [Case(c.name, c.request, c.statuses, json_error=c.name not in parser, texts=c.texts) for c in out]
    out.append(Case("body: chunked, past the limit", chunked, (413,), chunks=2 * max_body_bytes // 65536 + 2,
                    chunk_bytes=65536))  # fmt: skip
    out.append(Case("head: a 100 KB header", http("POST", EMBEDDINGS, b'{"input": "a"}', key=key,
                    headers="x-pad: " + "p" * 100_000 + "\r\n"), (400, 431), json_error=False))  # fmt: skip
    return out


def _count(texts: Any) -> int:
    return 1 if isinstance(texts, str) else len(texts)


def send(url: str, case: Case, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Send `case` on a fresh connection; (status, headers, body) of the answer (status 0: none came).

    The chunks of a chunked body are sent from a thread of their own while this one reads, so an answer that
    comes before the body ends is read as soon as it comes.
    """
    parts = urlsplit(url)
    received = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sender = threading.Thread(target=_send_all, args=(sock, case), daemon=True)
        sender.start()
        with contextlib.suppress(OSError):
            while not _whole(received) and (data := sock.recv(1 << 16)):
                received += data
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sender.join(timeout)
    return _parse(received)


def _send_all(sock: socket.socket, case: Case) -> None:
    chunk = b"%x\r\n%s\r\n" % (case.chunk_bytes, b"c" * case.chunk_bytes)
    with contextlib.suppress(OSError):  # NOTE: the server may answer and close before it has read everything
        sock.sendall(case.request)
        for _ in range(case.chunks):
            sock.sendall(chunk)


def _whole(received: bytes) -> bool:
    head, found, body = received.partition(b"\r\n\r\n")
    if not found:
        return False
    length = _headers(head).get("content-length")
    return length is not None and len(body) >= int(length)


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}


def _parse(received: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = received.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0, {}, received
    return status, _headers(head), body


def check(case: Case, status: int, body: bytes) -> str | None:
    """Why the answer breaks the case's rules, or None when it keeps them."""
    if status not in case.statuses:
        return f"status {status}, expected {' or '.join(map(str, case.statuses))}"
    if status >= 400 and case.json_error:
        try:
            error = json.loads(body)["error"]
            if not isinstance(error["message"], str) or not isinstance(error["type"], str):
                return "the error has no message or type"
        except (ValueError, KeyError, TypeError):
            return f"the error is not OpenAI's JSON shape: {body[:80]!r}"
    if status == 200 and case.texts is not None:
        try:
            data = json.loads(body)["data"]
        except (ValueError, KeyError, TypeError):
            return f"the answer is not an embeddings list: {body[:80]!r}"
        if len(data) != case.texts:
            return f"{len(data)} vectors for {case.texts} texts"
    return None


def run_fuzz(url: str, key: str, *, max_batch: int, max_text_chars: int, max_body_bytes: int) -> list[dict[str, Any]]:
    """Every case against the service at `url`: [{"name", "status", "problem"}, ...] (problem None: it held)."""
    results = []
    for case in cases(key, max_batch=max_batch, max_text_chars=max_text_chars, max_body_bytes=max_body_bytes):
        status, _, body = send(url, case)
        results.append({"name": case.name, "status": status, "problem": check(case, status, body)})
    return results
