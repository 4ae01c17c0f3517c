"""`distill compress`: a run's static student stored compressed, added to the run as a student of its own."""

from __future__ import annotations

from typing import Any

import click

from distill.cli.common import setup_logging as _setup_logging
from distill.cli.common import user_errors as _user_errors

# NOTE: the choices are spelt out here, not imported, so `distill --help` does not import torch
_SCHEMES = ("int8", "int4", "pq")
_WEIGHTINGS = ("none", "sqrt", "counts")


@click.command()
@click.option("--run", "run", required=True, type=click.Path(file_okay=False),
              help="The finished run folder (from `distill run`) whose static student is compressed; the new student "
              "is saved in its students/ folder and added to its summary.json.")  # fmt: skip
@click.option("--scheme", type=click.Choice(_SCHEMES), default="pq", show_default=True,
              help="int8: a byte a value and a scale a row (about a quarter of the table); int4: half a byte a value; "
              "pq: product quantisation, a byte for each of --parts pieces of a row (pq 48 of a 384-wide table: "
              "1/32 of its bytes).")  # fmt: skip
@click.option("--parts", type=int, default=48, show_default=True,
              help="pq: pieces a row, each a code into 256 centroids of its part; the dimension must divide by it. "
              "Fewer parts: smaller and coarser.")  # fmt: skip
@click.option("--weighting", type=click.Choice(_WEIGHTINGS), default="counts", show_default=True,
              help="pq: how much each token's row counts when the centroids are fitted: alike, by the square root "
              "of its count in the run's training texts, or by its count.")  # fmt: skip
@click.option("--scale-dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="int8 / int4: how each row's scale is stored.")  # fmt: skip
@click.option("--tune-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Epochs training the scales or codebooks (the codes fixed) on the run's teacher targets, so the "
              "compressed table wins back some of what compression lost; 0: none.")  # fmt: skip
@click.option("--lr", type=float, default=1e-3, show_default=True, help="The tuning's peak learning rate.")
@click.option("--name", default="", help="The new student's name in the run  [default: static-SCHEME, with the "
              "parts for pq: static-pq48]")  # fmt: skip
@click.option("--source", default="static", show_default=True,
              help="The run's static student to compress; a compressed student of the run is tuned further instead "
              "(its scheme and codes kept; give --tune-epochs and a new --name).")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace a student of the run that has the same name.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of pq's k-means and of the tuning.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@_user_errors
def compress(verbose: bool, **options: Any) -> None:
    """Store a run's static student compressed (int8, int4 or product-quantised codes) as a new student of the run.

    The new student gives the static student's vectors from its compressed table; `distill eval`, `distill export`
    and `distill run --tasks` then treat it like any student. sentence-transformers and model2vec cannot load its
    folder (they read a plain float table); `students.load` and the ONNX export can.

    \b
    Example:
      distill compress --run runs/default --scheme pq --parts 48 --tune-epochs 3
      distill eval --run runs/default
    """
    from distill.training.compress import CompressConfig, compress_run

    _setup_logging(verbose)
    entry = compress_run(CompressConfig(**options), progress=True)
    source = entry["metrics"]["source_test_fidelity"]
    click.echo(f"{entry['name']}: test fidelity {entry['test_fidelity']:.4f} (its source {source:.4f}), "
               f"{entry['bytes'] / 2**20:.2f} MB in {entry['path']}")  # fmt: skip
