"""`POST /v1/tag` of `distill serve`, for an export holding a tagger (`distill head export` of a tokens head).

    curl localhost:8000/v1/tag -H 'content-type: application/json' -d '{"input": ["Alice flew to Paris"]}'

`input` is a text, a list of texts, or a list of texts already split into words (lists of strings). Each text's
words come back in order, each with its tag and that tag's probability (null where the model reads no token of
the word, past its max length, and the fallback tag is given). The tagger runs in a worker thread, so the event
loop goes on serving other requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel

from distill.runtime.guards import ApiError, check_texts


@runtime_checkable
class Tagger(Protocol):
    """An embedder with a tagger (`distill.runtime.OnnxTagger` is one)."""

    labels: list[str]

    def predict_scored(self, texts: Sequence[str | Sequence[str]], batch_size: int = 32) -> list[list[tuple]]: ...


class TagRequest(BaseModel):
    """The body of `POST /v1/tag`: one text, a list of texts, or a list of word lists."""

    input: str | list[str] | list[list[str]]
    model: str | None = None  # NOTE: accepted and ignored, as in /v1/embeddings


def add_tag_route(app: FastAPI, tagger: Tagger | None, model_name: str, *, max_batch: int, max_text_chars: int,
                  batch_size: int) -> None:  # fmt: skip
    """`POST /v1/tag`: with a tagger, each word of each text with its tag; without one, a 404 that says why."""

    @app.post("/v1/tag")
    async def tag(body: TagRequest) -> Response:
        """Tag one text or a list of texts; `data[i].words` are the words of `input[i]` with their tags."""
        if tagger is None:
            raise ApiError(404, f"the model '{model_name}' has no tagger: serve an export made by `distill head "
                           "export` of a tokens head to tag", code="no_tagger")  # fmt: skip
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        joined = [text if isinstance(text, str) else " ".join(text) for text in texts]  # a word list as it is read
        check_texts(joined, single=isinstance(body.input, str), max_batch=max_batch, max_text_chars=max_text_chars)
        try:
            tagged = await asyncio.to_thread(tagger.predict_scored, texts, batch_size) if texts else []
        except Exception as e:
            raise ApiError(500, "the model failed on this request", kind="server_error") from e
        data = [{"object": "tagging", "index": i,
                 "words": [{"word": w, "tag": t, "probability": None if p != p else p} for w, t, p in words]}
                for i, words in enumerate(tagged)]  # fmt: skip
        body_out = {"object": "list", "data": data, "model": model_name}
        return Response(json.dumps(body_out, ensure_ascii=False, separators=(",", ":")), media_type="application/json")
