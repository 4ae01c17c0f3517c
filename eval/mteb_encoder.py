"""A `TaskEncoder` as MTEB's encoder (`mteb.models.AbsEncoder`), its own prompts included. Needs the mteb extra.

MTEB asks for queries and documents (retrieval) with `prompt_type`; they go to the model's own query
and document encodes (the teacher's prompts, where its files name them), anything else to its plain
encode. Cosine is its similarity, as it is for every model here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from eval.encoders import TaskEncoder


class MtebEncoder(AbsEncoder):
    """MTEB's view of one model on one backend; its results are filed under "distill/<column>" and `revision`."""

    def __init__(self, encoder: TaskEncoder, revision: str) -> None:
        self.encoder = encoder
        self.mteb_model_meta = ModelMeta.create_empty(
            {"name": f"distill/{encoder.name.replace(':', '-')}", "revision": revision,
             "similarity_fn_name": ScoringFunction.COSINE, "framework": []}
        )  # fmt: skip

    def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:  # fmt: skip
        texts = [text for batch in inputs for text in batch["text"]]
        if prompt_type == PromptType.query:
            return self.encoder.queries(texts)
        if prompt_type == PromptType.document:
            return self.encoder.documents(texts)
        return np.asarray(self.encoder.encode(texts), dtype=np.float32)
