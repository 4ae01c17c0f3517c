"""The token-generator student: a small network writes each token's vector from its spelling.

A BERT's embedding table is its largest single part. Here a network a small fraction of its size
maps a token's characters to the teacher's vector for that token alone (`[CLS] token [SEP]`),
trained by regression on the teacher's vocabulary (a part held out to measure it) plus real
words from the corpus and gensim's word lists that the vocabulary does not hold as one token.
It can then (a) write the whole table of a static student, (b) give a vector to any word, in or
out of the vocabulary, and (c) stand in for a transformer's embedding table. It reads each token's
`distill.teacher.tokens.Spelling`, so it works alike for WordPiece, byte-level BPE and SentencePiece vocabularies.

As a student it is a static student whose table is generated: rows from the generator, one
learned weight per token, and one shared affine map into the space of sentence vectors.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from distill.data.corpus import Split
from distill.errors import DistillError
from distill.teacher.tokens import Speller, Spelling, check_fits
from students.base import Student, StudentConfig
from students.static import masked_mean
from students.tokengen_fit import fit_generator, read_words, token_weights, training_words

if TYPE_CHECKING:
    from distill.data.targets import Targets
    from distill.teacher.model import Teacher

logger = logging.getLogger(__name__)

WORD_COUNT_TEXTS = 1_000_000  # training texts whose words are counted for the generator's extra words


class Encoder(str, Enum):
    NGRAM = "ngram"  # a bag of hashed character n-grams (fastText's idea)
    CHARS = "chars"  # a character CNN over the token's bytes


@dataclass
class TokenGenConfig(StudentConfig):
    vocab_size: int = 30522
    encoder: str = Encoder.NGRAM.value
    buckets: int = 6400  # hashed n-gram buckets (ngram encoder); sized so the student is under 10% of the table
    width: int = 128  # width of an n-gram or character embedding
    # width of the generator's hidden layer; 0: about 2/3 of `dim` in steps of 64 (384 -> 256, 768 -> 512, 1024 -> 704)
    hidden: int = 0
    max_chars: int = 24  # characters of a token the generator reads (chars encoder)
    generator_epochs: int = 30  # epochs of token regression before sentence training
    extra_words: int = 8000  # most frequent corpus words that are not one token, added as training words
    words: str = ""  # a file of more words to learn, one per line
    held_out: float = 0.05  # fraction of vocabulary tokens and of extra words kept out to measure the generator
    generator_lr: float = 1e-2
    source: str = "generator"  # "teacher": the teacher's real vectors instead (the reference to compare with)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.encoder = Encoder(self.encoder).value
        if self.hidden == 0:
            self.hidden = max(64, 64 * math.floor(self.dim / 96 + 0.5))  # 64 * round(dim * 2 / 3 / 64)
        if min(self.vocab_size, self.buckets, self.width, self.hidden, self.max_chars, self.generator_epochs) <= 0:
            raise DistillError("tokengen sizes and generator-epochs must be positive")
        if self.source not in ("generator", "teacher"):
            raise DistillError(f"tokengen source must be 'generator' or 'teacher', not {self.source!r}")
        if not 0 < self.held_out < 0.5:
            raise DistillError(f"held-out must be in (0, 0.5), not {self.held_out}")


class TokenGenerator(nn.Module):
    """Token text -> (dim,) vector. `featurize` turns strings into the padded ids `forward` reads."""

    def __init__(self, config: TokenGenConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.encoder)
        if self.encoder is Encoder.NGRAM:
            self.embed = nn.EmbeddingBag(config.buckets + 1, config.width, mode="mean", padding_idx=config.buckets)
            features = config.width
        else:
            self.chars = nn.Embedding(259, config.width, padding_idx=0)  # bytes + pad + word start/end marks
            self.convs = nn.ModuleList(nn.Conv1d(config.width, config.hidden // 4, k, padding=k // 2)
                                       for k in (1, 3, 5, 7))  # fmt: skip
            features = 4 * (config.hidden // 4)
        self.mlp = nn.Sequential(nn.Linear(features, config.hidden), nn.GELU(), nn.Linear(config.hidden, config.dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(n, length) feature ids -> (n, dim)."""
        if self.encoder is Encoder.NGRAM:
            return self.mlp(self.embed(features))
        x = self.chars(features).transpose(1, 2)  # (n, width, length)
        mask = (features > 0).unsqueeze(1)
        pooled = [conv(x).masked_fill(~mask, -1e4).amax(dim=-1) for conv in self.convs]  # (n, hidden / 4) each
        return self.mlp(torch.cat(pooled, dim=-1))

    def featurize(self, tokens: Sequence[Spelling]) -> torch.Tensor:
        """(n, length) ids for token spellings; a whole word is `Spelling(word, word_start=True)`."""
        rows = [self._ngrams(t) if self.encoder is Encoder.NGRAM else self._bytes(t) for t in tokens]
        pad = self.config.buckets if self.encoder is Encoder.NGRAM else 0
        out = torch.full((len(rows), max((len(r) for r in rows), default=1) or 1), pad, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def _ngrams(self, token: Spelling) -> list[int]:
        text = _marked(token)
        grams = [text[i : i + n] for n in (1, 2, 3, 4, 5) for i in range(len(text) - n + 1)]
        # NOTE: crc32, not hash(): Python salts str hashes per process, and the buckets must not move.
        return [zlib.crc32(g.encode()) % self.config.buckets for g in grams]

    def _bytes(self, token: Spelling) -> list[int]:
        body = list(token.text.encode()[: self.config.max_chars - 2])
        return ([257] if token.word_start else []) + [b + 1 for b in body] + [258]


def _marked(token: Spelling) -> str:
    """'<word>' for a word start, 'ing>' for a continuation ('##ing', 'ing' in byte-level or SentencePiece)."""
    return ("<" if token.word_start else "") + token.text + ">"


class TokenGenStudent(Student):
    kind = "tokengen"
    config_class = TokenGenConfig
    special_tokens = False  # NOTE: as the static student, which this one replaces
    default_training: ClassVar[dict[str, Any]] = {"lr": 1e-2, "epochs": 8, "batch_size": 256, "patience": 2}

    def __init__(self, config: TokenGenConfig, tokenizer: Tokenizer) -> None:
        super().__init__(config, tokenizer)
        self.generator = TokenGenerator(config)
        self.speller = Speller(self.tokenizer)
        self.vocab_tokens = [""] * config.vocab_size
        for token, i in self.tokenizer.get_vocab().items():
            if i < config.vocab_size:
                self.vocab_tokens[i] = token
        spelled = self.speller.spellings()[: config.vocab_size]
        self.vocab_spellings: list[Spelling | None] = spelled + [None] * (config.vocab_size - len(spelled))
        # NOTE: special and placeholder tokens get rows too, spelled as their literal text: the
        # unknown token can reach the student, and the others never count in its output.
        self.row_spellings = [
            s or Spelling(t, True) for s, t in zip(self.vocab_spellings, self.vocab_tokens, strict=True)
        ]
        self.register_buffer("features", self.generator.featurize(self.row_spellings), persistent=False)
        self.log_weight = nn.Parameter(torch.zeros(config.vocab_size))
        self.mix = nn.Parameter(torch.eye(config.dim))
        self.bias = nn.Parameter(torch.zeros(config.dim))
        if config.source == "teacher":
            self.register_buffer("real_table", torch.zeros(config.vocab_size, config.dim))
        self.metrics: dict[str, float] = {}
        self._table: torch.Tensor | None = None  # the generated rows, cached while not training

    @classmethod
    def from_teacher(cls, teacher: Teacher, targets: Targets, **options: Any) -> TokenGenStudent:
        check_fits(teacher.tokenizer.backend_tokenizer, teacher.vocab_size, teacher.name)
        config = cls.config_from_teacher(teacher, targets, vocab_size=teacher.vocab_size, **options)
        student = cls(config, teacher.tokenizer.backend_tokenizer)
        if config.source == "teacher":
            student.real_table.copy_(torch.from_numpy(np.array(targets.vocab_vectors, dtype=np.float32)))
            student.generator.requires_grad_(False)
            return student
        # NOTE: the commonest words of a very large corpus are found in its first texts
        texts = targets.iter_texts(Split.TRAIN, limit=WORD_COUNT_TEXTS)
        words = training_words(teacher, texts, config.extra_words, read_words(config.words))
        if not words:
            raise DistillError("the token generator found no words to learn from; give the corpus more text")
        ids = student.learnable_ids()
        texts, vectors, held_out, is_vocab = student.token_targets(teacher, targets, ids, words)
        weights = token_weights(targets, ids, len(texts))
        student.metrics = fit_generator(student.generator, texts, vectors, held_out, is_vocab,
                                        lr=config.generator_lr, weights=weights)  # fmt: skip
        return student

    def learnable_ids(self) -> list[int]:
        """Vocabulary ids the generator learns: every token but the special, added and placeholder ones."""
        return [i for i, s in enumerate(self.vocab_spellings) if s is not None]

    def token_targets(
        self, teacher: Teacher, targets: Targets, ids: list[int], words: list[str]
    ) -> tuple[list[Spelling], torch.Tensor, np.ndarray, np.ndarray]:
        """Spellings of tokens `ids` and of `words`, their teacher vectors, which are held out, which are vocabulary."""
        spelled = [self.row_spellings[i] for i in ids] + [Spelling(w, True) for w in words]
        # NOTE: words alone, without the teacher's prompt, as the vocabulary vectors were made.
        with teacher.without_prompt():
            word_vectors = teacher.sentence_vectors(words, 512)
        vectors = np.concatenate([np.asarray(targets.vocab_vectors[ids]), word_vectors])
        # NOTE: held out by a hash of the token as the vocabulary writes it, so the split never moves.
        keys = [self.vocab_tokens[i] for i in ids] + words
        held_out = np.array([zlib.crc32(k.encode()) % 10_000 < self.config.held_out * 10_000 for k in keys])
        is_vocab = np.arange(len(spelled)) < len(ids)
        return spelled, torch.from_numpy(vectors.astype(np.float32)), held_out, is_vocab

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """(n,) token ids -> (n, dim) rows, generated (or the teacher's own, for the reference)."""
        if self.config.source == "teacher":
            return self.real_table[ids]
        return self.generator(self.features[ids])

    def table(self) -> torch.Tensor:
        """(vocab, dim) generated rows (before the per-token weights and the shared map), cached until `train()`."""
        if self.config.source == "teacher":
            return self.real_table
        if self._table is None:
            with torch.no_grad():
                self._table = torch.cat([self.generator(self.features[i : i + 4096])
                                         for i in range(0, len(self.features), 4096)])  # fmt: skip
        return self._table

    def train(self, mode: bool = True) -> TokenGenStudent:
        super().train(mode)
        # NOTE: only training changes the generator. eval() builds the table once, so inference is a
        # lookup, not the generator run over the vocabulary on every call.
        if mode:
            self._table = None
        elif self._table is None:
            self.table()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.training:  # only the rows this batch uses: (unique,) ids -> (unique, dim)
            unique, inverse = torch.unique(input_ids, return_inverse=True)
            rows = self.rows(unique) * self.log_weight[unique].exp().unsqueeze(-1)
            vectors = rows[inverse]  # (batch, seq, dim)
        else:
            vectors = self.table()[input_ids] * self.log_weight[input_ids].exp().unsqueeze(-1)
        return F.normalize(masked_mean(vectors, attention_mask) @ self.mix + self.bias, dim=-1)

    def generate(self, words: Sequence[str]) -> torch.Tensor:
        """(n, dim) generated rows (before the weights and the shared map) for whole words, each read as one token."""
        spelled = [Spelling(self.speller.normalize_word(w), True) for w in words]
        return self.generator(self.generator.featurize(spelled).to(self.features.device))

    @torch.no_grad()
    def static_table(self) -> torch.Tensor:
        """(vocab, dim): the student as a static student's table. Each row is weighted and mapped by the shared
        affine map, which commutes with the mean, so a static student (no specials) with this table gives the same
        vectors; a text with no tokens apart (zero there, the normalised bias here)."""
        return (self.eval().table() * self.log_weight.exp().unsqueeze(-1)) @ self.mix + self.bias

    def export_module(self) -> nn.Module:
        """What `distill export` traces: the generator itself, not the 30k-row table it writes."""
        return self if self.config.source == "teacher" else GeneratorGraph(self)

    @torch.inference_mode()
    def word_vectors(self, words: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit vectors for whole words, in or out of the vocabulary, each read as one token."""
        if not words:
            raise DistillError("no words given; pass at least one word")
        return F.normalize(self.generate(words) @ self.mix + self.bias, dim=-1).float().cpu().numpy()


class GeneratorGraph(nn.Module):
    """The token-generator student as exported: each batch's distinct tokens are generated in the graph.

    NOTE: the generated table is what would make the exported file as big as a static student's
    (vocab x dim floats); this graph holds only the vocabulary's feature ids (int16) and the
    network, and gives the same vectors as the student's table lookup.
    """

    def __init__(self, student: TokenGenStudent) -> None:
        super().__init__()
        if student.features.max() >= 2**15:
            raise DistillError("tokengen export keeps feature ids as int16; use at most 32767 buckets")
        self.student = student
        self.register_buffer("vocab_features", student.features.to(torch.int16))  # (vocab, length)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        unique, inverse = torch.unique(input_ids.reshape(-1), return_inverse=True)  # (u,), (batch * seq,)
        inverse = inverse.reshape(input_ids.shape)  # NOTE: reshaped here so the graph keeps dynamic axes
        student = self.student
        rows = self.generate(self.vocab_features[unique].long()) * student.log_weight[unique].exp().unsqueeze(-1)
        vectors = rows[inverse]  # (batch, seq, dim)
        return F.normalize(masked_mean(vectors, attention_mask) @ student.mix + student.bias, dim=-1)

    def generate(self, features: torch.Tensor) -> torch.Tensor:
        """(u, length) feature ids -> (u, dim) rows, as `TokenGenerator.forward` computes them."""
        generator = self.student.generator
        if generator.encoder is not Encoder.NGRAM:
            return generator(features)
        # NOTE: EmbeddingBag(mode="mean", padding_idx) written out: its ONNX export does not take padding_idx
        keep = (features != generator.config.buckets).unsqueeze(-1).float()  # (u, length, 1)
        bags = (generator.embed.weight[features] * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
        return generator.mlp(bags)
