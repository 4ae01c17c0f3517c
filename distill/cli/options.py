"""The flags of `distill run`, `targets` and `train` (each also a key of the TOML file given with --config), and
those the runtime commands share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

CONFIG = click.option("--config", "config_file", type=click.Path(dir_okay=False),
                     help="TOML file of settings, in place of the default recipe (configs/default.toml, built in) "
                     "[default: the default recipe].")  # fmt: skip
VERBOSE = click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")

# The settings that shape the teacher's targets (which texts, how the teacher reads them, what is kept, where):
# all that `distill targets` reads. `distill train` needs the same ones again to find the targets it cached.
TARGET_OPTIONS = [
    click.option("--teacher", help="Teacher: a local model folder or a Hugging Face name of a BERT, RoBERTa, "
                 "XLM-RoBERTa, MPNet, DistilBERT, ELECTRA or ModernBERT encoder "
                 "[default: sentence-transformers/all-MiniLM-L6-v2, packaged offline]."),
    click.option("--prompt", help="Name of one of the teacher's own prompts (e5's 'query'), put before every "
                 "text for the teacher, the students and their exports [default: the teacher's default prompt]."),
    click.option("--prompt-text", help="A prompt given as text (for example 'query: '); wins over --prompt."),
    click.option("--trust-remote-code", is_flag=True, default=None,
                 help="Let transformers run the code a teacher's folder ships (only for teachers you trust)."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]),
                 help="Where the teacher's targets are made and the students trained [default: auto, CUDA "
                 "when present]."),
    click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]),
                 help="Autocast precision of the teacher's forward pass and of training [default: fp32]; "
                 "targets are cached per precision."),
    click.option("--processes", type=click.IntRange(min=1),
                 help="Processes on this machine (torch.distributed through torchrun: gloo on CPU, nccl on "
                 "CUDA, one GPU each) [default: 1]. Across machines, start `distill.cli` under torchrun instead."),
    click.option("--augment", help="New text forms made from the training texts, comma-separated: spans (2-8 "
                 "words: queries, titles), words (no punctuation, lower case), drop (a fifth of the words "
                 "dropped), join (two texts as one), bags (3-10 vocabulary words, one bag for every two texts, so "
                 "every row of a static table is trained), questions (a span asked as a question), sentences (one "
                 "sentence of a text of several), passages "
                 "(consecutive texts joined to 60-180 words, one for every 8 texts); 'none' for none [default: "
                 "spans,words,bags, as the default recipe; with --config, the file's, else spans,questions with "
                 "--passages cut, none without]."),
    click.option("--mix", metavar="CORPUS",
                 help="General text mixed into the corpus, as --corpus names one ('gensim': the default corpus), "
                 "so a student of your collection stays good on text unlike it [default: none]."),
    click.option("--mix-share", type=float,
                 help="The share of --mix's texts among the corpus's (after passages are cut) and them "
                 "[default: 0.5]."),
    click.option("--passages", type=click.Choice(["whole", "cut"]),
                 help="Corpus texts longer than the teacher's max length: kept whole, so the teacher and the "
                 "students read their first max-length tokens (whole), or cut at sentence ends into passages "
                 "that fit (cut) [default: whole]."),
    click.option("--token-targets", type=click.Choice(["auto", "store", "online", "none"]),
                 help="The teacher's token vectors: kept on disk (store), recomputed in the training loop "
                 "(online) or not used (none) [default: auto: store while they fit on disk, else online on "
                 "a GPU and none on the CPU; the log says which and why]."),
    click.option("--teacher-batch-tokens", type=int,
                 help="Padded tokens a batch in target extraction [default: 2048 on CPU, 16384 on GPU]."),
    click.option("--corpus", help="'gensim' (default), a .txt/.jsonl/.csv/.parquet file, a folder of "
                 ".txt files (or documents: --documents), a BEIR folder (its corpus.jsonl), or a Hugging Face "
                 "dataset. A collection of documents: see configs/collection.toml."),
    click.option("--text-column", help="Column holding the text in table-like corpora [default: text]."),
    click.option("--title-column", help="Column holding a title, put before the row's text where there is one, "
                 "as BEIR and MTEB give a model a document [default: title]."),
    click.option("--documents/--no-documents", default=None,
                 help="Each .txt or .md file of a corpus folder is one text (a document), not each line "
                 "[default: lines]."),
    click.option("--limit", type=int, help="Use at most this many corpus texts."),
    click.option("--max-length", type=int, help="Max tokens per text [default: the teacher's]."),
    click.option("--students", help="Comma-separated students to train [default: static,transformer,tokengen, as "
                 "the default recipe; with --config, the file's]; for `distill targets`, the students the targets "
                 "are for: whether one learns from the teacher's token vectors decides if they are kept "
                 "(--token-targets auto)."),
    click.option("--cache-dir", help="Where teacher targets are cached [default: runs/cache]."),
]  # fmt: skip

# The settings of training alone: `distill run` and `distill train` take them, `distill targets` does not.
TRAINING_OPTIONS = [
    click.option("--output", help="Run folder [default: runs/default]."),
    click.option("--index", type=click.Choice(["own", "teacher"]),
                 help="What the students' queries will search: an index they build themselves (own), or one the "
                 "teacher built (teacher: they train as its query encoders, with --index-weight 1 unless "
                 "given, and their scores against it come first) [default: own]."),
    click.option("--workers", type=int, help="Data-loading processes in training [default: 0 on CPU, 2 on GPU]."),
    click.option("--epochs", type=int, help="Training epochs (each student has its own default)."),
    click.option("--batch-size", type=int, help="Training batch size."),
    click.option("--lr", type=float, help="Peak learning rate."),
    click.option("--patience", type=int, help="Stop after this many epochs without a better validation fidelity."),
    click.option("--seed", type=int, help="Random seed for training."),
    click.option("--loss", type=click.Choice(["cosine", "mse", "cosine+mse"]), help="Sentence-vector loss."),
    click.option("--hidden-loss-weight", type=float, help="Weight of each kept layer's output against the "
                 "teacher layer it was copied from (transformer student; runs the teacher on every batch) "
                 "[default: 0]."),
    click.option("--similarity-weight", type=float, help="Weight of the in-batch cosine matrix against the "
                 "teacher's [default: 0; configs/quality.toml: see there]."),
    click.option("--index-weight", type=float, help="Weight of the student's vectors against the teacher's "
                 "(student(q) . teacher(d)): a query encoder for an index the teacher built [default: 0]."),
    click.option("--rank-weight", type=float, help="Weight of the listwise ranking term: how each text ranks "
                 "the batch's others, against the teacher's ranking [default: 0]."),
    click.option("--rank-temperature", type=float, help="Softmax temperature of the ranking term [default: 0.05]."),
    click.option("--matryoshka", metavar="DIMS", help="Comma-separated dims (256,128,64): the sentence loss also "
                 "on the vectors shortened to their first DIMS coordinates in the teacher's basis (its vectors' "
                 "principal directions), so shorter vectors keep their quality [default: none]."),
    click.option("--matryoshka-weight", type=float, help="Weight of each shortened vector's loss, against 1 for "
                 "the full vector's [default: 1]."),
]  # fmt: skip


def with_options(options: list[Callable[..., Any]], func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` with `options`, listed in --help in their order."""
    for option in reversed(options):
        func = option(func)
    return func


def target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The settings `distill targets` reads: those that shape the teacher's targets."""
    return with_options([CONFIG, *TARGET_OPTIONS, VERBOSE], func)


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The run settings of `run` and `train`: those of the targets, then those of training."""
    return with_options([CONFIG, *TARGET_OPTIONS, *TRAINING_OPTIONS, VERBOSE], func)


RESUME = click.option("--resume", is_flag=True, help="Go on from the last checkpoint of each student (in a run "
                       "folder that already holds them).")  # fmt: skip
OVERWRITE = click.option("--overwrite", is_flag=True, help="Train students the --output run already holds again "
                          "from the start (without it such a run is refused); a run of other targets is replaced "
                          "whole.")  # fmt: skip


MODEL = click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False),
                      help="An export folder written by `distill export`.")  # fmt: skip
PRECISION = click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
                          help="model.onnx (fp32) or model_int8.onnx (int8: faster, a little less exact).")  # fmt: skip
THREADS = click.option("--threads", type=click.IntRange(min=1),
                        help="onnxruntime threads per model call [default: one per core].")  # fmt: skip
