"""The production side: embed text with an exported student using numpy, onnxruntime and tokenizers, no torch.

    from distill.runtime import OnnxEmbedder

    embedder = OnnxEmbedder("runs/default/export/static", threads=4)
    vectors = embedder.encode(["a sentence", "another one"])  # (2, dim) float32, unit length

`OnnxClassifier` does the same for an export with a classification head (`distill head export`)
and gives label probabilities too; `OnnxTagger` gives each word its tag from an exported tagger. The export of a
head tuned with its model (`distill head train --tune`) has the untuned model beside it for embeddings:
`embeddings_of(folder)` gives its `OnnxEmbedder` (`distill.runtime.tuned`).

`distill.runtime.embed` embeds files (`distill embed`) and `distill.runtime.serve` is the HTTP
service (`distill serve`, with the `[serve]` extra): `batcher` joins requests into bounded model calls,
`guards` bounds what a request may send and shapes errors, `metrics` and `stats` count. `consistency`
measures how much a text's vector depends on its batch (`distill export` requires it not to). Nothing
here imports torch, transformers or the training modules: `pip install distill-embeddings` (the
`[runtime]` extra) is all it needs.
"""

from distill.runtime.classifier import HEAD_FILE, PROBABILITIES, OnnxClassifier
from distill.runtime.embedder import (
    CONFIG_FILE,
    FLAT_INPUT_NAMES,
    INPUT_NAMES,
    INPUTS,
    MODEL_FILES,
    OUTPUT_NAME,
    TOKENIZER_FILE,
    ExportConfig,
    OnnxEmbedder,
    UntokenizableText,
    flatten,
    pad,
)
from distill.runtime.tagger import TOKEN_PROBABILITIES, OnnxTagger, split_words
from distill.runtime.tuned import EMBEDDINGS_DIR, Tuning, embeddings_of

__all__ = [
    "CONFIG_FILE",
    "EMBEDDINGS_DIR",
    "FLAT_INPUT_NAMES",
    "HEAD_FILE",
    "INPUTS",
    "INPUT_NAMES",
    "MODEL_FILES",
    "OUTPUT_NAME",
    "PROBABILITIES",
    "TOKENIZER_FILE",
    "TOKEN_PROBABILITIES",
    "ExportConfig",
    "OnnxClassifier",
    "OnnxEmbedder",
    "OnnxTagger",
    "Tuning",
    "UntokenizableText",
    "embeddings_of",
    "flatten",
    "pad",
    "split_words",
]
