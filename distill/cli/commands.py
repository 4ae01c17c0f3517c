"""The `distill` command: `run`, `targets`, `train`, `eval`, `export`, `embed`, `serve` and `head` (in
`distill.cli.heads`), each with --help.

Every flag is also a key of the TOML file given with --config (same name, dashes or
underscores); a flag on the command line wins over the file.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from distill.cli.common import setup_logging as _setup_logging
from distill.cli.common import user_errors as _user_errors
from distill.cli.compress import compress
from distill.cli.heads import head
from distill.cli.options import MODEL, OVERWRITE, PRECISION, RESUME, THREADS, run_options, target_options
from distill.cli.share import push, write_table
from distill.cli.tasks import TASKS_OPTION, eval_task_options
from distill.errors import DistillError

if TYPE_CHECKING:
    from distill.training.config import RunConfig

# NOTE: heavy imports (torch, transformers) happen inside the commands that need them, so
# `distill embed` and `distill serve` start fast and run on the torch-free runtime install.

logger = logging.getLogger("distill")
FORM_FLAGS = ("model2vec_peers", "vector_forms")  # `distill eval` flags whose default EvalSettings holds


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


@main.command()
@run_options
@RESUME
@OVERWRITE
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
@target_options
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False),
    help="Build again the targets of this finished run from the settings it recorded (a run copied "
    "without its cache), into --cache-dir [default: where it had them]; the other flags are not read.",
)
@_user_errors
def targets(config_file: str | None, verbose: bool, run_dir: str | None, **flags: Any) -> None:
    """Compute the teacher's targets for the corpus and cache them (or say they are cached)."""
    from distill import distributed
    from distill.training.pipeline import Stopwatch, prepare

    if run_dir:
        from distill.training.finished import rebuild_targets

        _setup_logging(verbose)
        built = rebuild_targets(run_dir, flags.get("cache_dir"), progress=True)
        click.echo(f"targets of {run_dir} for {len(built.texts)} texts in {built.root}")
        return
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
@run_options
@RESUME
@OVERWRITE
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
@click.option("--model2vec-peers", metavar="SPECS",
              help="With --baseline, model2vec's quantised variants too, each distilled once into RUN/baseline/: "
              "comma-separated DIMS (PCA), a table dtype (int8, float16, float32) and/or vocabN (k-means "
              "vocabulary), joined by '/'; 'none' for none [default: int8,128/int8].")  # fmt: skip
@click.option("--vector-forms", metavar="FORMS",
              help="With --tasks, the stored vector forms scored for the size frontier (frontier.png) on the "
              "teacher and every student (torch): comma-separated DIMS (in the teacher's basis), PRECISION "
              "(int8, binary) or DIMS/PRECISION; 'none' for none [default: 256,128,64,int8,binary,"
              "128/int8].")  # fmt: skip
@eval_task_options
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@_user_errors
def evaluate(run_dir: str, verbose: bool, **settings: Any) -> None:
    """Compare the teacher, every student and the peer baseline: task scores, fidelity, size and speed.

    Writes RUN/report.json, RUN/report.md and plots (pareto.png, size.png, words.png; tasks.png and frontier.png
    with --tasks).
    """
    from distill.cards import write_run_cards
    from distill.cli.tasks import print_headline
    from eval.report import EvalSettings, evaluate_run, write_report

    _setup_logging(verbose)
    settings = {key: value for key, value in settings.items() if value is not None or key not in FORM_FLAGS}
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


@main.command()
@MODEL
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@PRECISION
@THREADS
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
@MODEL
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="A .txt file (one text per line) or a .jsonl file (a \"text\" field per line).")  # fmt: skip
@click.option("--output", "output_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the vectors: .npy (one row per text, described by OUTPUT.json beside it: "
              "dimensions, precision, model) or .jsonl ({\"index\", \"text\", \"embedding\", \"dimensions\", "
              "\"precision\"} per line).")  # fmt: skip
@PRECISION
@click.option("--dimensions", type=click.IntRange(min=1), metavar="K",
              help="Keep each vector's first K coordinates in the teacher's basis (the directions its vectors vary "
              "most along), unit length again; needs an export with basis.npz [default: all of them].")  # fmt: skip
@click.option("--vector-precision", type=click.Choice(["float32", "int8", "binary"]), default="float32",
              show_default=True,
              help="How each vector is stored: float32 (4 K bytes a vector), int8 (K bytes: each vector scaled so its "
              "largest value is 127) or binary (K / 8 bytes, rounded up: the sign of each coordinate centred on the "
              "teacher's mean, 8 to a byte, numpy packbits order; needs basis.npz).")  # fmt: skip
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Texts per model call.")
@THREADS
@_user_errors
def embed(model_dir: str, input_path: str, output_path: str, precision: str, batch_size: int, threads: int | None,
          dimensions: int | None, vector_precision: str) -> None:  # fmt: skip
    """Embed a file of texts with an exported student (row i of the output is text i of the input)."""
    from distill.runtime.embed import VectorForm, embed_file

    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    count, dim = embed_file(model_dir, input_path, output_path, precision=precision, batch_size=batch_size,
                            threads=threads, progress=True, dimensions=dimensions,
                            vector_precision=vector_precision)  # fmt: skip
    size = VectorForm(dim, vector_precision).bytes_per_vector
    click.echo(
        f"{count} texts -> {output_path} ({count} x {dim} dimensions, {vector_precision}: {size} bytes a vector)"
    )


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
main.add_command(compress)
main.add_command(write_table)
main.add_command(push)

if __name__ == "__main__":
    main()
