"""The `distill` command: `run`, `targets`, `train`, `eval`, `export`, `embed`, `serve` and `head` (in
`distill.cli.heads`), each with --help.

Every flag is also a key of the TOML file given with --config (same name, dashes or
underscores); a flag on the command line wins over the file.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from distill.cli.common import setup_logging as _setup_logging
from distill.cli.common import user_errors as _user_errors
from distill.cli.heads import head
from distill.cli.share import push, write_table
from distill.cli.tasks import TASKS_OPTION, eval_task_options
from distill.errors import DistillError

if TYPE_CHECKING:
    from distill.training.config import RunConfig

# NOTE: heavy imports (torch, transformers) happen inside the commands that need them, so
# `distill embed` and `distill serve` start fast and run on the torch-free runtime install.

logger = logging.getLogger("distill")


_CONFIG = click.option("--config", "config_file", type=click.Path(dir_okay=False),
                     help="TOML file of settings, in place of the default recipe (configs/default.toml, built in) "
                     "[default: the default recipe].")  # fmt: skip
_VERBOSE = click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")

# The settings that shape the teacher's targets (which texts, how the teacher reads them, what is kept, where):
# all that `distill targets` reads. `distill train` needs the same ones again to find the targets it cached.
_TARGET_OPTIONS = [
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
_TRAINING_OPTIONS = [
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
]  # fmt: skip


def _with(options: list[Callable[..., Any]], func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` with `options`, listed in --help in their order."""
    for option in reversed(options):
        func = option(func)
    return func


def _target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The settings `distill targets` reads: those that shape the teacher's targets."""
    return _with([_CONFIG, *_TARGET_OPTIONS, _VERBOSE], func)


def _options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The run settings of `run` and `train`: those of the targets, then those of training."""
    return _with([_CONFIG, *_TARGET_OPTIONS, *_TRAINING_OPTIONS, _VERBOSE], func)


def _config(config_file: str | None, verbose: bool, **flags: Any) -> RunConfig:
    from distill.training.config import build_config, recipe_values

    _setup_logging(verbose)
    if "tasks" in flags:
        flags["tasks"] = list(flags["tasks"]) or None  # NOTE: no --tasks given: the config file's, if any
    return build_config(recipe_values(config_file), flags)


def _relaunched(config: RunConfig) -> bool:
    """Hand this command to torchrun as `config.processes` processes, if asked and not done yet; True if handed."""
    from distill import distributed

    if config.processes == 1:
        return False
    if distributed.launched():
        logger.info("started by torchrun: it says how many processes run, not --processes")
        return False
    if config.device in ("cuda", "auto") and config.placement().device.type == "cuda":
        import torch

        if config.processes > torch.cuda.device_count():
            raise DistillError(f"--processes {config.processes} on CUDA needs as many GPUs; this machine has "
                               f"{torch.cuda.device_count()}")  # fmt: skip
    status = distributed.relaunch(config.processes, _without_processes(sys.argv[1:]))
    if status:
        sys.exit(status)
    return True


def _without_processes(argv: list[str]) -> list[str]:
    """The command line less its --processes flag (the processes torchrun starts must not start more)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            out.append(arg)
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="distill-embeddings")
def main() -> None:
    """Distill an encoder embedding model into small, fast students and compare them with it."""


_RESUME = click.option("--resume", is_flag=True, help="Go on from the last checkpoint of each student (in a run "
                       "folder that already holds them).")  # fmt: skip
_OVERWRITE = click.option("--overwrite", is_flag=True, help="Train students the --output run already holds again "
                          "from the start (without it such a run is refused); a run of other targets is replaced "
                          "whole.")  # fmt: skip


@main.command()
@_options
@_RESUME
@_OVERWRITE
@TASKS_OPTION
@_user_errors
def run(config_file: str | None, verbose: bool, resume: bool, overwrite: bool, **flags: Any) -> None:
    """Build the teacher's targets, then train, test and save every student.

    \b
    With no --config, the default recipe (configs/default.toml, what `make distill` trains): the
    three students on the packaged teacher and corpus, with spans, words and bags added; every flag
    given changes that setting alone. Into an --output that holds a run, its students are added
    to it (same teacher and corpus); one it already holds needs --resume or --overwrite.

    \b
    Student defaults follow the teacher:
      transformer  keeps about a quarter of its layers, evenly spread, first and last
                   included ([0, 5] of 6, [0, 6, 11] of 12); set `layers` in the config
      tokengen     hidden width two thirds of the teacher's dimension (256 for 384)
    A student that training does not improve, or that ends below 0.5 validation
    fidelity, is flagged in the summary with what to try.
    """
    from distill import distributed
    from distill.cli.tasks import read_tasks, score_and_print
    from distill.training.pipeline import run as run_pipeline

    began = time.perf_counter()
    config = _config(config_file, verbose, **flags)
    if _relaunched(config):
        return
    tasks = read_tasks(config)
    summary = run_pipeline(config, resume=resume, overwrite=overwrite, progress=True)
    if distributed.group().is_main:
        _print_summary(summary)
        if tasks:
            score_and_print(summary.run_dir, tasks, config.device)
        click.echo(f"distill run took {_duration(time.perf_counter() - began)} in all")
    distributed.close()


@main.command()
@_target_options
@_user_errors
def targets(config_file: str | None, verbose: bool, **flags: Any) -> None:
    """Compute the teacher's targets for the corpus and cache them (or say they are cached)."""
    from distill import distributed
    from distill.training.pipeline import Stopwatch, prepare

    config = _config(config_file, verbose, **flags)
    if _relaunched(config):
        return
    watch = Stopwatch()
    _, built = prepare(config, watch, progress=True)
    if distributed.group().is_main:
        click.echo(f"targets for {len(built.texts)} texts in {built.root}")
        _print_stages(watch.seconds)
    distributed.close()


@main.command()
@_options
@_RESUME
@_OVERWRITE
@TASKS_OPTION
@_user_errors
def train(config_file: str | None, verbose: bool, resume: bool, overwrite: bool, **flags: Any) -> None:
    """Train the students on targets that `distill targets` already cached."""
    from distill import distributed
    from distill.cli.tasks import read_tasks, score_and_print
    from distill.training.pipeline import Stopwatch, cached_targets, load_teacher, train_students
    from distill.training.rerun import check_output

    config = _config(config_file, verbose, **flags)
    if _relaunched(config):
        return
    check_output(config, resume=resume, overwrite=overwrite)
    tasks = read_tasks(config)
    distributed.init(config.placement().device.type)
    teacher = load_teacher(config)
    summary = train_students(teacher, cached_targets(teacher, config), config, Stopwatch(), resume=resume,
                             overwrite=overwrite, progress=True)  # fmt: skip
    if distributed.group().is_main:
        _print_summary(summary)
        if tasks:
            score_and_print(summary.run_dir, tasks, config.device)
    distributed.close()


@main.command("eval")
@click.option("--run", "run_dir", default="runs/default", show_default=True, type=click.Path(file_okay=False),
              help="The run folder to evaluate (made by `distill run`).")  # fmt: skip
@click.option("--text", "text_file", type=click.Path(dir_okay=False),
              help="Extra text (one text a line) to measure fidelity on, beside the run's test split.")  # fmt: skip
@click.option("--sts", "sts_file", type=click.Path(dir_okay=False),
              help="An STS file: sentence<TAB>sentence<TAB>score a line (or the STS Benchmark layout).")  # fmt: skip
@click.option("--latency-texts", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Test texts timed at batch 32 and 128.")  # fmt: skip
@click.option("--singles", type=click.IntRange(min=1), default=100, show_default=True,
              help="Texts timed one at a time (p50 / p95).")  # fmt: skip
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed passes per batch size; the median counts.")  # fmt: skip
@click.option("--min-seconds", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Each speed measurement goes on at least this long (fast students need many passes).")  # fmt: skip
@click.option("--threads", type=click.IntRange(min=1), help="Threads for torch and onnxruntime [default: torch's].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True,
              help="Where the teacher and the students' torch backends run (auto: CUDA when present).")  # fmt: skip
@click.option("--teacher-onnx/--no-teacher-onnx", default=True, show_default=True,
              help="Also time the teacher exported to ONNX fp32 / int8 (once, cached): like with like.")  # fmt: skip
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also evaluate model2vec's distillation of the teacher (needs model2vec[distill]).")  # fmt: skip
@eval_task_options
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@_user_errors
def evaluate(run_dir: str, verbose: bool, **settings: Any) -> None:
    """Compare the teacher, every student and the peer baseline: task scores, fidelity, size and speed.

    Writes RUN/report.json, RUN/report.md and plots (pareto.png, size.png, words.png; tasks.png with --tasks).
    """
    from distill.cards import write_run_cards
    from distill.cli.tasks import print_headline
    from eval.report import EvalSettings, evaluate_run, write_report

    _setup_logging(verbose)
    report, word_vectors = evaluate_run(run_dir, EvalSettings(**settings), progress=True)
    files, cards = write_report(run_dir, report, word_vectors), write_run_cards(run_dir)
    click.echo(f"\nwrote {', '.join(path.name for path in files)} in {run_dir}, and {len(cards)} model cards")
    print_headline(report)


@main.command()
@click.option("--run", "run_dir", default="runs/default", show_default=True, type=click.Path(file_okay=False),
              help="The run folder whose students to export (made by `distill run`).")  # fmt: skip
@click.option("--check-texts", default=512, show_default=True, help="Held-out test texts for the parity check.")
@click.option("--fuse/--no-fuse", default=False, show_default=True,
              help="Apply onnxruntime's transformer fusions (Attention, SkipLayerNormalization...) to "
              "transformer graphs, kept when they still match torch: for GPU providers (on the CPU they ran "
              "no faster).")  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@_user_errors
def export(run_dir: str, check_texts: int, fuse: bool, verbose: bool) -> None:
    """Export every student of a run to ONNX (fp32 and int8) in RUN/export/, checked against torch.

    The fp32 graph must match the torch student to 1e-4 on held-out text, or nothing is written.
    With --fuse a transformer's graph gets onnxruntime's fusions when the fused graph matches too. The
    int8 graph's agreement and fidelity loss are measured into each folder's parity.json, which `distill eval` reads
    (it also exports by itself whatever is missing or older than its student).
    """
    from distill.export.exporter import EXPORT_DIR
    from distill.export.run import export_run

    _setup_logging(verbose)
    results = export_run(run_dir, check_texts=check_texts, fuse=fuse)
    click.echo(f"\n{'student':<12} {'fused':>5} {'fp32 max diff':>13} {'int8 cos':>9} {'int8 loss':>9} "
               f"{'fp32 MB':>8} {'int8 MB':>8}  folder")  # fmt: skip
    for name, parity in results.items():
        loss = parity["int8"]["fidelity_loss"]
        fused = "yes" if parity.get("fusion", {}).get("fused") else "no"
        click.echo(
            f"{name:<12} {fused:>5} {parity['fp32']['max_abs_difference']:>13.1e} "
            f"{parity['int8']['mean_cosine_to_fp32']:>9.4f} {'-' if loss is None else f'{loss:.4f}':>9} "
            f"{parity['bytes']['fp32'] / 2**20:>8.1f} {parity['bytes']['int8'] / 2**20:>8.1f}  "
            f"{run_dir}/{EXPORT_DIR}/{name}"
        )


_MODEL = click.option("--model", "model_dir", required=True, type=click.Path(file_okay=False),
                      help="An export folder written by `distill export`.")  # fmt: skip
_PRECISION = click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
                          help="model.onnx (fp32) or model_int8.onnx (int8: faster, a little less exact).")  # fmt: skip
_THREADS = click.option("--threads", type=click.IntRange(min=1),
                        help="onnxruntime threads per model call [default: one per core].")  # fmt: skip


@main.command()
@_MODEL
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@_PRECISION
@_THREADS
@click.option("--max-batch", type=click.IntRange(min=1), default=256, show_default=True,
              help="Most texts one request may hold (more: 413).")  # fmt: skip
@click.option("--max-text-chars", type=click.IntRange(min=1), default=20000, show_default=True,
              help="Most characters one text may have (more: 413).")  # fmt: skip
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Most texts of one model call: concurrent requests are joined up to it, a larger request is "
              "split.")  # fmt: skip
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True),
              help="Most MiB a request body may take, counted as it arrives, chunked or not (more: 413) [default: "
              "what --max-batch texts of --max-text-chars JSON-escaped characters take].")  # fmt: skip
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="How long a request waits for others to join its batch (0: never).")  # fmt: skip
@click.option("--model-name", help="The model name in responses [default: the student's name in config.json].")
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="Log one line per request.")
@click.option("--api-key", metavar="KEY",
              help="Require 'Authorization: Bearer KEY' on every endpoint but GET /health [default: "
              "$DISTILL_API_KEY, better than the flag, which shows in the process list; no key: open to "
              "all].")  # fmt: skip
@click.option("--graceful-timeout", type=click.IntRange(min=0), default=30, show_default=True,
              help="On SIGTERM or SIGINT, seconds to let requests in flight finish before they are "
              "cancelled.")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes serving the one port, each with the model loaded and --threads threads "
              "[default threads: the cores shared out]; each keeps its own /metrics.")  # fmt: skip
@_user_errors
def serve(model_dir: str, host: str, port: int, precision: str, threads: int | None, model_name: str | None,
          access_log: bool, api_key: str | None, max_body_mb: float | None, **limits: Any) -> None:  # fmt: skip
    """Serve an exported student over HTTP: OpenAI-compatible POST /v1/embeddings, GET /v1/models,
    GET /metrics (Prometheus) and GET /health; with a head (`distill head export`), POST /v1/classify too, and
    with a tagger (a tokens head), POST /v1/tag.

    \b
    Example:
      DISTILL_API_KEY=secret distill serve --model runs/default/export/static --port 8000
      curl localhost:8000/v1/embeddings -H 'authorization: Bearer secret' \\
           -H 'content-type: application/json' -d '{"input": ["a sentence"]}'
    """
    import os

    from distill.runtime.serve import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    # NOTE: read here, not through click's envvar: click takes an empty variable for an unset one, which would
    # leave the service open when a deployment meant to set a key and set nothing.
    api_key = api_key if api_key is not None else os.environ.get("DISTILL_API_KEY")
    if max_body_mb is not None:
        limits["max_body_bytes"] = max(1, int(max_body_mb * 2**20))
    try:
        run_server(model_dir, host=host, port=port, precision=precision, threads=threads, model_name=model_name,
                   access_log=access_log, api_key=api_key, **limits)  # fmt: skip
    except KeyboardInterrupt:  # NOTE: while loading the model; once serving, uvicorn handles Ctrl+C itself
        click.echo("stopped", err=True)


@main.command()
@_MODEL
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="A .txt file (one text per line) or a .jsonl file (a \"text\" field per line).")  # fmt: skip
@click.option("--output", "output_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the vectors: .npy (float32, one row per text) or .jsonl "
              "({\"index\", \"text\", \"embedding\"} per line).")  # fmt: skip
@_PRECISION
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Texts per model call.")
@_THREADS
@_user_errors
def embed(model_dir: str, input_path: str, output_path: str, precision: str, batch_size: int,
          threads: int | None) -> None:  # fmt: skip
    """Embed a file of texts with an exported student (row i of the output is text i of the input)."""
    from distill.runtime.embed import embed_file

    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    count, dim = embed_file(model_dir, input_path, output_path, precision=precision, batch_size=batch_size,
                            threads=threads, progress=True)  # fmt: skip
    click.echo(f"{count} texts -> {output_path} ({count} x {dim} float32)")


def _print_summary(summary: Any) -> None:
    click.echo(f"\nrun folder: {summary.run_dir}   texts: " + ", ".join(f"{k} {v}" for k, v in summary.texts.items())
               + f"   on {summary.device} {summary.precision}, {summary.processes} process(es), token targets "
               f"{summary.token_targets}")  # fmt: skip
    click.echo(f"{'student':<12} {'test fidelity':>13} {'tokens':>7} {'other':>7} {'params':>11} {'size':>9} "
               f"{'train s':>8}  path")  # fmt: skip
    for s in summary.students:
        tokens = "-" if s.test_token_fidelity is None else f"{s.test_token_fidelity:.4f}"
        click.echo(
            f"{s.name:<12} {s.test_fidelity:>13.4f} {tokens:>7} {s.other_domain_fidelity:>7.4f} {s.params:>11,} "
            f"{s.bytes / 2**20:>7.1f}MB {s.train_seconds:>8.1f}  {s.path}"
        )
        for key, value in s.metrics.items():
            click.echo(f"{'':<12} {key}: {value:.4f}")
    if summary.students and summary.students[0].other_domain:
        sets = list(summary.students[0].other_domain)
        click.echo("other: mean fidelity on held-out text of other forms; by set:")
        click.echo(f"{'':<12} " + " ".join(f"{name:>15}" for name in sets))
        for s in summary.students:
            click.echo(f"{s.name:<12} " + " ".join(f"{s.other_domain.get(name, float('nan')):>15.4f}" for name in sets))
    _print_stages(summary.stage_seconds)
    for line in (line for s in summary.students for line in s.warnings):
        click.secho(f"warning: {line}", fg="yellow", err=True)


def _duration(seconds: float) -> str:
    """12 min 26 s; 41 s."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _print_stages(seconds: dict[str, float]) -> None:
    click.echo("stages: " + ", ".join(f"{name} {s:.1f}s" for name, s in seconds.items()))


main.add_command(head)
main.add_command(write_table)
main.add_command(push)

if __name__ == "__main__":
    main()
