"""The folder of a static table that sentence-transformers and model2vec load: `SentenceTransformer(path)` and
`model2vec.StaticModel.from_pretrained(path)` give the student's own vectors.

Both loaders take the mean of the rows of a text's tokens, tokenized with `add_special_tokens=False`, and
L2-normalise it; neither adds a prompt. A student with `specials` counts [CLS] and [SEP] (<s> / </s>) in every
text, which is a constant `row[CLS] + row[SEP]` added to every text's sum; after the normalisation only the
direction of the sum counts, not how many rows it has. So the folder's `tokenizer.json` puts one marker token
before every text (`MARKER`, its normalizer's `Prepend`), whose row is `row[CLS] + row[SEP]`, and the student's
prompt after it:

    model.safetensors              embedding.weight (vocab + 1, dim): the table, then the marker's row
    tokenizer.json                 the student's tokenizer with the marker and the prompt prepended by its normalizer,
                                   truncating one token earlier (the marker stands for two)
    modules.json, 1_Normalize/     sentence-transformers: StaticEmbedding, Normalize
    config_sentence_transformers.json   also model2vec's config for this layout: normalize, max_length

The student's own tokenizer then goes to `student_tokenizer.json`. What the loaders cannot give the same:
a text with no token after the teacher's normalizer (the empty text) gets a zero vector, where the student gives
its [CLS] / [SEP] direction; a text holding a special token's literal text ("[MASK]") gets the marker once per
piece around it; model2vec drops [UNK] tokens (its own rule) and first cuts a text to `max_length` times its
vocabulary's median token length in characters.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer

from distill.errors import DistillError
from distill.io import write_json

MARKER = "[distill:specials]"  # a token that stands for the teacher's [CLS] and [SEP] together
STUDENT_TOKENIZER = "student_tokenizer.json"


def loader_tokenizer(tokenizer: Tokenizer, *, specials: bool, prompt: str, max_length: int) -> Tokenizer:
    """`tokenizer` as the loaders call it (`add_special_tokens=False`), giving the ids the student reads.

    With `specials`, the marker token (id: the vocabulary's size) comes first, standing for [CLS] and [SEP].
    NOTE: the normalizer's `Prepend` also runs on a normalized added token's own text when the tokenizer is
    built; the `Replace` after it undoes that for the marker, so the marker still matches itself.
    """
    data = json.loads(tokenizer.to_str())
    normalize = tokenizer.normalizer.normalize_str if tokenizer.normalizer is not None else (lambda text: text)
    if specials and normalize(MARKER) != MARKER:
        raise DistillError(f"the teacher's normalizer changes {MARKER!r}; this static student cannot be laid out "
                           "for sentence-transformers and model2vec (train it with specials = false)")  # fmt: skip
    prefix = (MARKER if specials else "") + normalize(prompt)
    if prefix:
        steps = [] if data["normalizer"] is None else [data["normalizer"]]
        steps.append({"type": "Prepend", "prepend": prefix})
        if specials:
            steps.append({"type": "Replace", "pattern": {"String": prefix + MARKER}, "content": MARKER})
        data["normalizer"] = {"type": "Sequence", "normalizers": steps}
    if specials:
        marker = {"id": vocab_size(tokenizer), "content": MARKER, "normalized": True, "special": True}
        data["added_tokens"].append({**marker, "single_word": False, "lstrip": False, "rstrip": False})
    data["post_processor"] = None  # NOTE: so a caller that asks for special tokens gets the same ids
    data["padding"] = None
    folded = Tokenizer.from_str(json.dumps(data))
    folded.enable_truncation(max_length - 1 if specials else max_length)
    return folded


def vocab_size(tokenizer: Tokenizer) -> int:
    """The tokenizer's ids, added tokens included; they must run 0..n-1, as the loaders index their table by id."""
    ids = set(tokenizer.get_vocab(with_added_tokens=True).values())
    if ids != set(range(len(ids))):
        raise DistillError("the teacher's tokenizer has gaps in its token ids; its static table cannot be laid "
                           "out for sentence-transformers and model2vec")  # fmt: skip
    return len(ids)


def loader_table(table: torch.Tensor, tokenizer: Tokenizer, special_ids: list[int]) -> torch.Tensor:
    """(n (+1), dim): the rows the tokenizer can give, then the marker's row (the sum of `special_ids` rows) if any."""
    rows = table[: vocab_size(tokenizer)]
    if special_ids:
        rows = torch.cat([rows, table[special_ids].sum(dim=0, keepdim=True)])
    return rows.detach().float().contiguous()


def write_layout(
    path: Path, table: torch.Tensor, tokenizer: Tokenizer, *, specials: bool, prompt: str, max_length: int
) -> None:
    """Write the loaders' files into `path`: table, tokenizer, modules, config (see the module's docstring)."""
    special_ids = tokenizer.encode("", add_special_tokens=True).ids if specials else []
    if specials and not special_ids:
        raise DistillError("the teacher's tokenizer adds no special tokens, so the student has none to fold in")
    folded = loader_tokenizer(tokenizer, specials=specials, prompt=prompt, max_length=max_length)
    save_file({"embedding.weight": loader_table(table, tokenizer, special_ids)}, str(path / "model.safetensors"))
    folded.save(str(path / "tokenizer.json"))
    write_json(path / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.StaticEmbedding"},
        {"idx": 1, "name": "1", "path": "1_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])  # fmt: skip
    (path / "1_Normalize").mkdir(exist_ok=True)
    # NOTE: model2vec reads this file as its config in a sentence-transformers layout; sentence-transformers
    # ignores the keys it does not know.
    write_json(path / "config_sentence_transformers.json", {
        "similarity_fn_name": "cosine", "normalize": True, "max_length": folded.truncation["max_length"],
    })  # fmt: skip


def student_rows(table: torch.Tensor, tokenizer: Tokenizer, vocab: int) -> torch.Tensor:
    """The student's (vocab, dim) table from the folder's: the rows its tokenizer gives, the marker's row dropped,
    and zeros for rows past the tokenizer's vocabulary (no text reaches them)."""
    rows = table[: vocab_size(tokenizer)]
    return torch.cat([rows, rows.new_zeros(vocab - len(rows), rows.shape[1])])


def student_tokenizer_file(path: Path) -> Path:
    """The student's own tokenizer in `path`: `student_tokenizer.json` when the loaders' one differs."""
    return path / STUDENT_TOKENIZER if (path / STUDENT_TOKENIZER).is_file() else path / "tokenizer.json"
