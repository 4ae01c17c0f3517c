"""How a tokenizer spells its tokens: the text each token stands for, and whether it starts a word.

Tokenizers write the same word in different ways. WordPiece (BERT) marks a piece that continues a
word (`##ing`); byte-level BPE (RoBERTa, ModernBERT) writes every byte as a printable character
and marks a word start with the character for a space (`Ġthe`, `Ã©` for `é`); SentencePiece's
metaspace (XLM-RoBERTa) marks a word start with `▁` (`▁the`). `Speller` reads which scheme a
`tokenizers.Tokenizer` uses from the tokenizer alone and turns its tokens into `Spelling`s, so
code that reads spelling (the token generator) sees the same word the same way under every scheme.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from tokenizers import Tokenizer

from distill.errors import DistillError

# NOTE: vocabularies reserve rows for tokens that were never trained ('[unused12]' in BERT,
# '<unused3>' in Gemma-style ones); they spell nothing, so they are treated like special tokens.
PLACEHOLDER = re.compile(r"\[unused\d+\]|<unused\d+>")


class Scheme(str, Enum):
    WORDPIECE = "wordpiece"  # a prefix ('##') marks a piece that continues a word
    BYTE_LEVEL = "byte-level"  # bytes written as printable characters; a leading space ('Ġ') starts a word
    METASPACE = "metaspace"  # SentencePiece: '▁' stands for a space and starts a word
    PLAIN = "plain"  # a token is its own text, and every token starts a word


@dataclass(frozen=True)
class Spelling:
    """A token's plain text (no scheme marks, bytes decoded) and whether it begins a word."""

    text: str
    word_start: bool


def byte_alphabet() -> dict[str, int]:
    """GPT-2's printable character for each byte, inverted: character -> byte.

    NOTE: `tokenizers` exposes the 256 characters (`ByteLevel.alphabet()`) but not which byte each
    stands for, and its ByteLevel decoder turns a token that is not whole UTF-8 into '�'; so the
    mapping (GPT-2's `bytes_to_unicode`) is written out here and tested against the library.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    chars = {b: b for b in printable} | {b: 256 + n for n, b in enumerate(shifted)}
    return {chr(c): b for b, c in chars.items()}


_BYTES = byte_alphabet()


def decode_bytes(token: str) -> str:
    """A byte-level token in plain text ('Ã©' -> 'é'); bytes that are not whole UTF-8 read as latin-1."""
    raw = b"".join(bytes([_BYTES[c]]) if c in _BYTES else c.encode() for c in token)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # NOTE: a piece of a multi-byte character (a common byte-level token) is no text of its own;
        # latin-1 keeps its bytes distinct and readable instead of collapsing them all to '�'.
        return raw.decode("latin-1")


def _components(node: Any) -> Iterator[dict[str, Any]]:
    """Every component of a serialised normalizer / pre-tokenizer / decoder, Sequences opened."""
    if isinstance(node, dict):
        yield node
        for key in ("pretokenizers", "decoders", "normalizers"):
            for child in node.get(key) or []:
                yield from _components(child)


class Speller:
    """One tokenizer's spelling rules, read from the tokenizer itself."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.scheme, self.mark = read_scheme(tokenizer)
        self._added = set(tokenizer.get_added_tokens_decoder())

    def spell(self, token: str) -> Spelling:
        """The spelling of one vocabulary token: '##ing' -> ('ing', False), 'Ġthe' / '▁the' -> ('the', True)."""
        if self.scheme is Scheme.BYTE_LEVEL:
            text = decode_bytes(token)
            # NOTE: without a leading space a byte-level token continues a word, or is the first word
            # of a text when the tokenizer adds no prefix space; it is read as a continuation, as
            # the two cannot be told apart and the continuation is by far the commoner use.
            return Spelling(text[1:], True) if text.startswith(" ") else Spelling(text, False)
        if self.scheme is Scheme.METASPACE:
            start = token.startswith(self.mark)
            return Spelling(token.removeprefix(self.mark).replace(self.mark, " "), start)
        if self.scheme is Scheme.WORDPIECE and token.startswith(self.mark):
            return Spelling(token[len(self.mark) :], False)
        return Spelling(token, True)

    def spellings(self) -> list[Spelling | None]:
        """Indexed by token id: each token's spelling; None for special, added and placeholder tokens and gaps."""
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        out: list[Spelling | None] = [None] * id_count(self.tokenizer)
        for token, i in vocab.items():
            if i not in self._added and not PLACEHOLDER.fullmatch(token):
                out[i] = self.spell(token)
        return out

    def plain(self, piece: str) -> str:
        """A pre-token (as the pre-tokenizer writes it) in plain text: 'Ġcafé' / '▁café' -> ' café'."""
        if self.scheme is Scheme.BYTE_LEVEL:
            return decode_bytes(piece)
        if self.scheme is Scheme.METASPACE:
            return piece.replace(self.mark, " ")
        return piece

    def words(self, text: str) -> list[str]:
        """The words the tokenizer's normalizer and pre-tokenizer make of `text`, in plain text."""
        normalizer, pre = self.tokenizer.normalizer, self.tokenizer.pre_tokenizer
        normalized = normalizer.normalize_str(text) if normalizer else text
        pieces = [p for p, _ in pre.pre_tokenize_str(normalized)] if pre else [normalized]
        return [word for piece in pieces for word in self.plain(piece).split()]

    def normalize_word(self, word: str) -> str:
        """`word` as the tokenizer's normalizer writes it (lower-cased for an uncased BERT), in plain text."""
        normalizer = self.tokenizer.normalizer
        normalized = normalizer.normalize_str(word) if normalizer else word
        if self.scheme is Scheme.METASPACE:  # some SentencePiece normalizers write spaces as '▁' already
            normalized = normalized.replace(self.mark, " ")
        return normalized.strip()

    def one_token(self, words: Sequence[str]) -> list[bool]:
        """For each (normalized) word: whether the vocabulary holds it, as it is at a word start, as one token."""
        # NOTE: a leading space puts a byte-level or metaspace word in its word-start form ('Ġword', '▁word')
        # whatever the tokenizer's prefix-space setting; WordPiece needs none.
        spaced = self.scheme in (Scheme.BYTE_LEVEL, Scheme.METASPACE)
        forms = [" " + w if spaced else w for w in words]
        out = []
        for encoding in self.tokenizer.encode_batch(forms, add_special_tokens=False):
            # NOTE: a teacher's tokenizer may pad to a fixed length; only the unmasked ids are the word's.
            ids = [i for i, keep in zip(encoding.ids, encoding.attention_mask, strict=True) if keep]
            out.append(len(ids) == 1 and ids[0] not in self._added)
        return out


def read_scheme(tokenizer: Tokenizer) -> tuple[Scheme, str]:
    """The tokenizer's spelling scheme and its mark ('##', '▁', ' ' for byte-level, '' for plain)."""
    spec = json.loads(tokenizer.to_str())
    parts = [*_components(spec.get("pre_tokenizer")), *_components(spec.get("decoder"))]
    if any(p.get("type") == "ByteLevel" for p in parts):
        return Scheme.BYTE_LEVEL, " "
    for part in parts:
        if part.get("type") == "Metaspace":
            return Scheme.METASPACE, part.get("replacement", "▁")
        if part.get("type") == "Replace" and part.get("pattern", {}).get("String") == "▁":  # Llama-style decoders
            return Scheme.METASPACE, "▁"
    prefix = spec.get("model", {}).get("continuing_subword_prefix")
    if prefix:
        return Scheme.WORDPIECE, prefix
    return Scheme.PLAIN, ""


def id_count(tokenizer: Tokenizer) -> int:
    """One more than the highest token id the tokenizer can give."""
    return max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1) + 1


def check_fits(tokenizer: Tokenizer, rows: int, teacher: str) -> None:
    """Raise a DistillError when the tokenizer gives ids past the `rows` of the teacher's embedding table."""
    count = id_count(tokenizer)
    if count > rows:
        raise DistillError(
            f"teacher {teacher!r}: its tokenizer gives token ids up to {count - 1} but its embedding table "
            f"has {rows} rows; use the tokenizer saved with this model"
        )
