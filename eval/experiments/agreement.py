"""The suite's task figures against independent implementations, on a run `distill eval --tasks` has scored.

    python -m eval.experiments.agreement --run runs/default [--sts ../shared/data/stsb-dev.tsv]

Each model the sentence-transformers loader reads (the teacher, the static and the transformer
student) is loaded with `SentenceTransformer(path)` and encoded by it, not by this project's code;
the metrics come from other libraries: retrieval from `pytrec_eval` (nDCG@10 as `ndcg_cut_10`,
recall@100 as `recall_100`, MRR@10 as `recip_rank` over each query's top 10), STS from
`scipy.stats.spearmanr`, clustering from the suite's own evaluator (scikit-learn's k-means and
V-measure already; only the encoder differs), classification from
scikit-learn's own `LogisticRegression` (a different head from the suite's cross-validated one, so
it agrees only as closely as two heads do). Prints every (task, metric, model) with the suite's
figure from report.json, the independent one and the difference in points.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from distill.errors import DistillError
from distill.io import read_json
from distill.runfolder import read_summary
from distill.teacher.model import resolve_teacher
from eval.clustering import ClusteringEvaluator
from eval.retrieval import RetrievalData
from eval.small_suite import chat_qa, chat_topics, polarity
from eval.tasks import read_sts

MODELS = ("teacher", "static", "transformer")  # the models sentence-transformers loads
Encode = Callable[[list[str]], np.ndarray]


def sentence_transformers_encoders(run_dir: Path) -> dict[str, Encode]:
    """Each model of the run as sentence-transformers loads and encodes it (unit vectors)."""
    from sentence_transformers import SentenceTransformer

    summary = read_summary(run_dir)
    paths = {"teacher": str(resolve_teacher(summary["teacher"]))}
    paths |= {s["name"]: s["path"] for s in summary["students"] if s["name"] in MODELS}
    encoders = {}
    for name, path in paths.items():
        model = SentenceTransformer(path, device="cpu")
        encoders[name] = lambda texts, model=model: model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        )
    return encoders


def retrieval(data: RetrievalData, encode: Encode) -> dict[str, float]:
    """nDCG@10, recall@100 and MRR@10 by pytrec_eval, over each query's top 100 by cosine."""
    import pytrec_eval

    doc_ids, query_ids = list(data.documents), list(data.queries)
    documents = encode([data.documents[d] for d in doc_ids])
    queries = encode([data.queries[q] for q in query_ids])
    scores = queries @ documents.T
    run: dict[str, dict[str, float]] = {}
    for row, query in zip(scores, query_ids, strict=True):
        top = np.argsort(-row)[:100]
        run[query] = {doc_ids[i]: float(row[i]) for i in top}
    qrels = {q: {d: int(r) for d, r in rel.items()} for q, rel in data.qrels.items()}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    top10 = {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:10]) for q, docs in run.items()}
    mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    mean = lambda results, key: 100 * float(np.mean([r[key] for r in results.values()]))  # noqa: E731
    return {"ndcg_at_10": mean(full, "ndcg_cut_10"), "recall_at_100": mean(full, "recall_100"),
            "mrr_at_10": mean(mrr, "recip_rank")}  # fmt: skip


def sts(pairs: tuple[list[str], list[str], np.ndarray], encode: Encode) -> dict[str, float]:
    from scipy.stats import spearmanr

    first, second, gold = pairs
    cosine = np.sum(encode(first) * encode(second), axis=1)
    return {"spearman": 100 * float(spearmanr(cosine, gold).statistic)}


def classification(split: Any, encode: Encode) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    (train_texts, train_labels), (test_texts, test_labels) = split
    head = LogisticRegression(max_iter=1000).fit(encode(train_texts), train_labels)
    predicted = head.predict(encode(test_texts))
    return {"accuracy": 100 * accuracy_score(test_labels, predicted),
            "macro_f1": 100 * f1_score(test_labels, predicted, average="macro")}  # fmt: skip


def compare(run_dir: Path, sts_file: str | None) -> list[tuple[str, str, str, float, float]]:
    """(task, metric, model, the suite's figure, the independent figure) for every figure both have."""
    report = read_json(run_dir / "report.json")
    if "tasks" not in report:
        raise DistillError(
            f"{run_dir}/report.json has no task scores: run distill eval --run {run_dir} --tasks default"
        )
    suite = {(row["task"], row["metric"]): row["scores"] for row in report["tasks"]["rows"]}
    tasks: dict[str, Callable[[Encode], dict[str, float]]] = {
        "chat-qa": lambda encode: retrieval(chat_qa(), encode),
        # NOTE: the suite's clustering is scikit-learn's k-means and V-measure already: what is independent here is
        # the encoder (sentence-transformers'), so its own evaluator runs on it
        "chat-topics": ClusteringEvaluator(*chat_topics()),
        "polarity": lambda encode: classification(polarity(), encode),
    }
    if sts_file:
        pairs = read_sts(Path(sts_file))
        tasks[Path(sts_file).stem] = lambda encode: sts(pairs, encode)
    rows = []
    for model, encode in sentence_transformers_encoders(run_dir).items():
        for task, score in tasks.items():
            for metric, value in score(encode).items():
                ours = suite.get((task, metric), {}).get(model)
                if ours is not None:
                    rows.append((task, metric, model, ours, value))
    return rows


@click.command()
@click.option("--run", "run_dir", default="runs/default", show_default=True, type=click.Path(exists=True))
@click.option("--sts", "sts_file", help="The STS file the eval scored (sts:FILE), to check it too.")
def main(run_dir: str, sts_file: str | None) -> None:
    """Print the suite's task figures beside independent implementations' (sentence-transformers, pytrec_eval,
    scipy, scikit-learn)."""
    logging.basicConfig(level=logging.WARNING)
    rows = compare(Path(run_dir), sts_file)
    click.echo(f"{'task':<12} {'metric':<14} {'model':<12} {'suite':>8} {'independent':>12} {'diff':>7}")
    for task, metric, model, ours, theirs in rows:
        click.echo(f"{task:<12} {metric:<14} {model:<12} {ours:8.2f} {theirs:12.2f} {ours - theirs:+7.2f}")
    worst = max((abs(o - t), task, metric, model) for task, metric, model, o, t in rows if task != "polarity")
    click.echo(f"largest difference outside classification: {worst[0]:.2f} points ({worst[1]} {worst[2]}, {worst[3]})")


if __name__ == "__main__":
    main()
