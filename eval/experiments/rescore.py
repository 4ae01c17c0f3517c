"""Trial: binary document vectors searched as a service would (`distill.runtime.vectors.search`): a Hamming
shortlist of `rescore` x k documents, ranked again by the float query against their ±1 bits or their int8 copies,
against exact float search, on a run's teacher and students.

    python -m eval.experiments.rescore --run runs/default --beir ../shared/data/beir/nfcorpus --rescore 4,10

nDCG@10 of each way over the same queries and documents, and its share of the same model's float search. The
raw vectors come from the disk cache `eval.experiments.dimensions` keeps (embedded once across trials).
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from distill.data.basis import teacher_basis
from distill.runtime.vectors import search, store, unit
from distill.training.finished import open_run, run_teacher
from eval.encoders import VectorCache
from eval.experiments.dimensions import TASK_VECTORS, disk_cached, student_entries
from eval.models import student_candidates, task_encoders, teacher_candidate
from eval.ranking import ranking_metrics
from eval.retrieval import read_beir

K = 100  # documents ranked a query: what nDCG@10 and recall@100 read


def ways(rescores: list[int]) -> list[tuple[str, str, int, bool]]:
    """(label, precision, rescore, with int8 copies) of each way measured."""
    out = [
        ("float32, exact", "float32", 0, False),
        ("int8, exact", "int8", 0, False),
        ("binary, Hamming", "binary", 0, False),
    ]
    for r in rescores:
        out += [
            (f"binary, rescore x{r} with ±1", "binary", r, False),
            (f"binary, rescore x{r} with int8", "binary", r, True),
        ]
    return out


@click.command()
@click.option("--run", "run_dir", default="runs/default", show_default=True, type=click.Path(path_type=Path))
@click.option("--beir", "beir", required=True, type=click.Path(path_type=Path), help="A BEIR folder.")
@click.option("--students", default="static,transformer", show_default=True)
@click.option("--rescore", "rescores", default="4,10", show_default=True, help="Shortlist sizes, as multiples of k.")
def main(run_dir: Path, beir: Path, students: str, rescores: str) -> None:
    """nDCG@10 of float, int8 and binary search (with and without rescoring) for a run's teacher and students."""
    logging.basicConfig(level=logging.WARNING)
    summary, targets = open_run(run_dir)
    cache = VectorCache(Path(summary["targets"]).parent / TASK_VECTORS)
    basis = teacher_basis(targets)
    data = read_beir(beir)
    query_ids, document_ids = list(data.queries), list(data.documents)
    entries = student_entries([run_dir], [], students.split(","))
    candidates = [teacher_candidate(run_teacher(summary, "cpu")),
                  *student_candidates({"students": entries}, run_dir, None, None, None, onnx=False)]  # fmt: skip
    click.echo(f"{beir.name}: {len(query_ids)} queries, {len(document_ids)} documents; nDCG@10 (share of float)")
    for candidate in candidates:
        encoder = disk_cached(task_encoders(candidate)[0], cache)
        queries = unit(encoder.queries([data.queries[q] for q in query_ids]))
        documents = unit(encoder.documents([data.documents[d] for d in document_ids]))
        exact = None
        for label, precision, rescore, with_int8 in ways([int(r) for r in rescores.split(",")]):
            stored = store(basis, documents, basis.dim, precision)
            copies = store(basis, documents, basis.dim, "int8") if with_int8 else None
            rows = search(basis, queries, stored, K, precision=precision, rescore=rescore, rescore_with=copies)
            ranked = {q: [document_ids[i] for i in row] for q, row in zip(query_ids, rows, strict=True)}
            ndcg = ranking_metrics(ranked, data.qrels)["ndcg_at_10"]
            exact = exact or ndcg
            click.echo(f"{candidate.name:12s} {label:32s} {ndcg:6.2f}  {100 * ndcg / exact:5.1f}%")


if __name__ == "__main__":
    main()
