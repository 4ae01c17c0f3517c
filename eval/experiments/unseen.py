"""Trial: the token generator against the static table made as small, on text with words the table never saw.

    python -m eval.experiments.unseen --run runs/default --sts ../shared/data/stsb-dev.tsv

Each row is a way to encode text, with the bytes it stores (weights only; the tokenizer is the same for all) and
its fidelity (mean cosine to the teacher, which reads the same text) on each set:

    clean              the run's test texts
    misspelled         the same texts with typos (`distill.data.unseen.misspell`, changed texts only)
    held-out typos     the misspelled held-out set `distill eval` measures (reviews, titles, forum, chat)
    rare words         the held-out sentences with words the vocabulary splits into 3+ pieces

and with `--sts`, Spearman x 100 on STS-B pairs as they are and with both sentences misspelled (gold kept).

The rows: the static student and its table compressed (`eval.experiments.compress`: int8, int4, binary, pq-48),
the tokengen student as trained, the same with `whole_words` (a split word's pieces read from its whole spelling,
all of it or half), and hybrids: a compressed static table whose split words take the generator's row for the
whole word, mapped into the table's space by least squares over the vocabulary (the bytes of both). Nothing is
trained again; the students are the run's. A first look at issue 31 part 3; nothing here is shipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Encoding

import students
from distill.cli.tasks import aligned
from distill.data.corpus import Split
from distill.data.domains import other_domain_texts
from distill.data.unseen import misspell, misspelled_pairs
from distill.errors import DistillError
from distill.io import write_json
from distill.runfolder import read_summary
from distill.teacher.tokens import Speller
from distill.training.finished import open_run, run_teacher
from eval.experiments.compress import binary, product_quantised, quantised
from eval.fidelity import cosine_mean
from eval.tasks import read_sts, sts_spearman
from students.base import pad
from students.static import StaticStudent, masked_mean
from students.tokengen import TokenGenStudent

logger = logging.getLogger(__name__)

Encode = Callable[[Sequence[str]], np.ndarray]
TABLES: dict[str, Callable[[np.ndarray], tuple[np.ndarray, int]]] = {
    "int8": lambda t: quantised(t, 8),
    "int4": lambda t: quantised(t, 4),
    "binary": binary,
    "pq-48": lambda t: product_quantised(t, 48),
}


def text_sets(run: Path, test_texts: int) -> dict[str, list[str]]:
    """The sets each row is measured on, by name."""
    _, targets = open_run(run)
    clean = list(targets.texts_and_vectors(Split.TEST)[0][:test_texts])
    others = other_domain_texts()
    misspelled = [m for m in (misspell(t) for t in clean) if m not in clean]
    return {"clean": clean, "misspelled": misspelled, "held-out typos": others["misspelled"],
            "rare words": others["rare words"]}  # fmt: skip


@dataclass
class SplitWords:
    """The distinct words of a batch that the tokenizer splits into pieces, and which token is a piece of which."""

    words: list[str]  # normalized as the tokenizer writes them ('orignally')
    index: torch.Tensor  # (batch, seq) long: the word each piece belongs to, -1 for a token that is a whole word

    def mixed(self, rows: torch.Tensor, word_rows: torch.Tensor, share: float) -> torch.Tensor:
        """(batch, seq, dim) rows with each split word's pieces moved `share` of the way to its whole row
        (`word_rows`: (len(words), dim), in the space of `rows`)."""
        if not self.words or share == 0:
            return rows
        whole = word_rows[self.index.clamp(min=0)]  # (batch, seq, dim)
        weight = share * (self.index >= 0).unsqueeze(-1).to(rows.dtype)  # (batch, seq, 1)
        return rows * (1 - weight) + whole * weight


def split_words(speller: Speller, texts: Sequence[str], encodings: Sequence[Encoding], length: int) -> SplitWords:
    """The words of `texts` that their `encodings` give as several pieces, in a batch padded to `length` tokens."""
    words: dict[str, int] = {}
    index = torch.full((len(encodings), length), -1, dtype=torch.long)
    for row, (text, encoding) in enumerate(zip(texts, encodings, strict=True)):
        pieces: dict[int, list[int]] = {}
        for position, word in enumerate(encoding.word_ids):
            if word is not None:  # NOTE: special tokens belong to no word
                pieces.setdefault(word, []).append(position)
        for positions in pieces.values():
            if len(positions) > 1:
                start, end = encoding.offsets[positions[0]][0], encoding.offsets[positions[-1]][1]
                index[row, positions] = words.setdefault(speller.normalize_word(text[start:end]), len(words))
    return SplitWords(list(words), index)


@dataclass
class RowEncoder:
    """Texts -> unit vectors as a static table gives them (mean of the rows, unit length), where each split word's
    pieces move `share` of the way to the row `words` gives for the whole word. A tokengen student is such a table
    with a weight a row (`weights`) and an affine map after the mean (`mix`, `bias`)."""

    student: StaticStudent | TokenGenStudent  # its tokenizer and whether it adds special tokens
    speller: Speller
    table: torch.Tensor  # (vocab, dim)
    words: Callable[[list[str]], torch.Tensor] | None = None  # whole words -> (n, dim) rows in the table's space
    share: float = 1.0
    weights: torch.Tensor | None = None  # (vocab,)
    mix: tuple[torch.Tensor, torch.Tensor] | None = None  # (dim, dim) and (dim,)

    @torch.inference_mode()
    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.concatenate([self.batch(list(texts[i : i + 256])) for i in range(0, len(texts), 256)])

    def batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.student.tokenizer.encode_batch(texts, add_special_tokens=self.student.special_tokens)
        ids, mask = pad([e.ids for e in encodings]).values()
        rows = self.table[ids]  # (batch, seq, dim)
        if self.words is not None:
            split = split_words(self.speller, texts, encodings, ids.shape[1])
            if split.words:
                rows = split.mixed(rows, self.words(split.words), self.share)
        if self.weights is not None:
            rows = rows * self.weights[ids].unsqueeze(-1)
        pooled = masked_mean(rows, mask)  # (batch, dim)
        if self.mix is not None:
            pooled = pooled @ self.mix[0] + self.mix[1]
        return F.normalize(pooled, dim=-1).numpy()


def word_map(tokengen: TokenGenStudent, table: np.ndarray) -> Callable[[list[str]], torch.Tensor]:
    """Whole words -> (n, dim) rows in `table`'s space: the generator's rows mapped by the affine map that best
    takes its rows for the vocabulary's tokens to the table's (least squares)."""
    ids = tokengen.learnable_ids()
    generated = tokengen.eval().table()[ids].numpy()  # (tokens, dim)
    design = np.hstack([generated, np.ones((len(ids), 1), np.float32)])
    mapping = torch.from_numpy(np.linalg.lstsq(design, table[ids], rcond=None)[0].astype(np.float32))  # (dim + 1, dim)
    return lambda words: tokengen.generate(words) @ mapping[:-1] + mapping[-1]


def tokengen_encoder(tokengen: TokenGenStudent, speller: Speller, share: float) -> RowEncoder:
    """The tokengen student's encode, each split word's pieces moved `share` of the way to its whole word's row."""
    return RowEncoder(tokengen, speller, tokengen.eval().table(), tokengen.generate, share,
                      tokengen.log_weight.detach().exp(), (tokengen.mix.detach(), tokengen.bias.detach()))  # fmt: skip


def tokengen_bytes(tokengen: TokenGenStudent) -> int:
    """Its weights in int8 (a byte a parameter; the few scales left out), as its int8 export stores the network."""
    return sum(p.numel() for p in tokengen.parameters())


def rows_to_measure(run: Path, tables: list[str], shares: list[float]) -> dict[str, tuple[int, Encode]]:
    """Each row of the trial: (bytes stored, encode)."""
    summary = read_summary(run)
    paths = {s["name"]: s["path"] for s in summary["students"]}
    static, tokengen = students.load(paths["static"]), students.load(paths["tokengen"])
    if not isinstance(static, StaticStudent) or not isinstance(tokengen, TokenGenStudent):
        raise DistillError(f"{run}: the trial needs the run's static and tokengen students")
    speller = tokengen.speller  # NOTE: the static student reads the same vocabulary
    table = static.embedding.weight.detach().numpy().copy()
    generator_bytes = tokengen_bytes(tokengen)
    out: dict[str, tuple[int, Encode]] = {
        "static fp32": (table.size * 4, RowEncoder(static, speller, torch.from_numpy(table)))
    }
    compressed = {name: TABLES[name](table) for name in tables}
    for name, (rows, size) in compressed.items():
        out[f"static {name}"] = (size, RowEncoder(static, speller, torch.from_numpy(rows)))
    for share in shares:
        out[f"tokengen, whole words {share:g}"] = (generator_bytes, tokengen_encoder(tokengen, speller, share))
    for name, (rows, size) in compressed.items():
        words = word_map(tokengen, rows)
        encode = RowEncoder(static, speller, torch.from_numpy(rows), words, share=1.0)
        out[f"static {name} + generator words"] = (size + generator_bytes, encode)
    return out


def sts_sets(path: str | None) -> dict[str, tuple[list[str], list[str], np.ndarray]]:
    if not path:
        return {}
    first, second, gold = read_sts(path)
    return {"STS-B": (first, second, gold), "STS-B misspelled": (*misspelled_pairs(first, second), gold)}


@click.command()
@click.option("--run", "run", default="runs/default", show_default=True, type=click.Path(path_type=Path))
@click.option("--tables", default=",".join(TABLES), show_default=True, help="Compressed tables to compare.")
@click.option("--test-texts", default=500, show_default=True, help="Test texts of the run in the clean set.")
@click.option("--sts", "sts_file", default=None, help="An STS-B .tsv file: also Spearman on it, clean and misspelled.")
@click.option("--out", default=None, type=click.Path(path_type=Path), help="Write the figures here as JSON.")
def main(run: Path, tables: str, test_texts: int, sts_file: str | None, out: Path | None) -> None:
    """Fidelity to the teacher on clean text, misspelled text and rare words; bytes and each row's figures."""
    logging.basicConfig(level=logging.WARNING)
    sets = text_sets(run, test_texts)
    sts = sts_sets(sts_file)
    teacher = run_teacher(read_summary(run), "cpu")
    teacher_vectors = {name: teacher.sentence_vectors(texts) for name, texts in sets.items()}
    measured = rows_to_measure(run, [t.strip() for t in tables.split(",") if t.strip()], [0.0, 0.25, 0.5, 1.0])
    figures = {"sets": {name: len(texts) for name, texts in sets.items()}, "rows": {}}
    if sts:
        on_sts = {name: sts_spearman(teacher.sentence_vectors, *pairs) for name, pairs in sts.items()}
        figures["rows"]["teacher"] = {"bytes": None, **dict.fromkeys(sets, 1.0), **on_sts}
    for label, (size, encode) in measured.items():
        row: dict[str, float | None] = {"bytes": size}
        row.update({name: cosine_mean(teacher_vectors[name], encode(texts)) for name, texts in sets.items()})
        row.update({name: sts_spearman(encode, *pairs) for name, pairs in sts.items()})
        figures["rows"][label] = row
        logger.warning("%s: %s", label, row)
    columns = [*sets, *sts]
    lines = [["row", "MB", *columns]]
    for label, row in figures["rows"].items():
        size = "" if row["bytes"] is None else f"{row['bytes'] / 2**20:.2f}"
        lines.append([label, size, *(f"{row[c]:.4f}" if c in sets else f"{row[c]:.1f}" for c in columns)])
    click.echo(f"sets: {figures['sets']}")
    click.echo("\n".join(aligned(lines)))
    if out:
        write_json(out, figures)


if __name__ == "__main__":
    main()
