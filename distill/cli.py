"""The `distill` command: `run`, `targets` and `train`, each with --help.

Every flag is also a key of the TOML file given with --config (same name, dashes or
underscores); a flag on the command line wins over the file.
"""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable
from typing import Any

import click

from distill.config import RunConfig, build_config, read_toml
from distill.errors import DistillError

logger = logging.getLogger("distill")


def _options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The run settings shared by `run`, `targets` and `train`."""
    options = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file of settings."),
        click.option("--teacher", help="Teacher: a local model folder or a Hugging Face name "
                     "[default: sentence-transformers/all-MiniLM-L6-v2, packaged offline]."),
        click.option("--corpus", help="'gensim' (default), a .txt/.jsonl/.csv/.parquet file, a folder of "
                     ".txt files, or a Hugging Face dataset."),
        click.option("--text-column", help="Column holding the text in table-like corpora [default: text]."),
        click.option("--limit", type=int, help="Use at most this many corpus texts."),
        click.option("--max-length", type=int, help="Max tokens per text [default: the teacher's]."),
        click.option("--students", help="Comma-separated students to train [default: static]."),
        click.option("--output", help="Run folder [default: runs/default]."),
        click.option("--cache-dir", help="Where teacher targets are cached [default: runs/cache]."),
        click.option("--epochs", type=int, help="Training epochs (each student has its own default)."),
        click.option("--batch-size", type=int, help="Training batch size."),
        click.option("--lr", type=float, help="Peak learning rate."),
        click.option("--patience", type=int, help="Stop after this many epochs without a better validation fidelity."),
        click.option("--seed", type=int, help="Random seed for training."),
        click.option("--loss", type=click.Choice(["cosine", "mse", "cosine+mse"]), help="Sentence-vector loss."),
        click.option("-v", "--verbose", is_flag=True, help="Log debug detail."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a user's mistake into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DistillError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted; finished work is kept: run the same command with --resume to go on", err=True)
            sys.exit(130)

    return wrapper


def _config(config_file: str | None, verbose: bool, **flags: Any) -> RunConfig:
    _setup_logging(verbose)
    return build_config(read_toml(config_file) if config_file else {}, flags)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", force=True)
    for noisy in ("transformers", "datasets", "urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not verbose:
        warnings.filterwarnings("ignore", category=UserWarning)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="distill-embeddings")
def main() -> None:
    """Distill a BERT embedding model into small, fast students and compare them with it."""


@main.command()
@_options
@click.option("--resume", is_flag=True, help="Go on from the last checkpoint of each student.")
@_user_errors
def run(config_file: str | None, verbose: bool, resume: bool, **flags: Any) -> None:
    """Build the teacher's targets, then train, test and save every student."""
    from distill.pipeline import run as run_pipeline

    config = _config(config_file, verbose, **flags)
    summary = run_pipeline(config, resume=resume, progress=True)
    _print_summary(summary)


@main.command()
@_options
@_user_errors
def targets(config_file: str | None, verbose: bool, **flags: Any) -> None:
    """Compute the teacher's targets for the corpus and cache them (or say they are cached)."""
    from distill.pipeline import Stopwatch, prepare

    config = _config(config_file, verbose, **flags)
    watch = Stopwatch()
    _, built = prepare(config, watch, progress=True)
    click.echo(f"targets for {len(built.texts)} texts in {built.root}")
    _print_stages(watch.seconds)


@main.command()
@_options
@click.option("--resume", is_flag=True, help="Go on from the last checkpoint of each student.")
@_user_errors
def train(config_file: str | None, verbose: bool, resume: bool, **flags: Any) -> None:
    """Train the students on targets that `distill targets` already cached."""
    from distill.pipeline import Stopwatch, cached_targets, train_students
    from distill.teacher import Teacher

    config = _config(config_file, verbose, **flags)
    teacher = Teacher.load(config.teacher, max_length=config.max_length)
    summary = train_students(teacher, cached_targets(teacher, config), config, Stopwatch(), resume=resume,
                             progress=True)  # fmt: skip
    _print_summary(summary)


def _print_summary(summary: Any) -> None:
    click.echo(f"\nrun folder: {summary.run_dir}   texts: " + ", ".join(f"{k} {v}" for k, v in summary.texts.items()))
    click.echo(f"{'student':<12} {'test fidelity':>13} {'tokens':>7} {'reviews':>8} {'params':>11} {'size':>9} "
               f"{'train s':>8}  path")  # fmt: skip
    for s in summary.students:
        tokens = "-" if s.test_token_fidelity is None else f"{s.test_token_fidelity:.4f}"
        click.echo(
            f"{s.name:<12} {s.test_fidelity:>13.4f} {tokens:>7} {s.reviews_fidelity:>8.4f} {s.params:>11,} "
            f"{s.bytes / 2**20:>7.1f}MB {s.train_seconds:>8.1f}  {s.path}"
        )
        for key, value in s.metrics.items():
            click.echo(f"{'':<12} {key}: {value:.4f}")
    _print_stages(summary.stage_seconds)


def _print_stages(seconds: dict[str, float]) -> None:
    click.echo("stages: " + ", ".join(f"{name} {s:.1f}s" for name, s in seconds.items()))


if __name__ == "__main__":
    main()
