"""`distill head`: train, measure, compare and export task heads on a frozen student (see `distill.heads`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from distill.cli import head_steps
from distill.cli.common import setup_logging as _setup_logging
from distill.cli.common import user_errors as _user_errors


@click.group()
def head() -> None:
    """Task heads on a frozen student: train a classifier on its vectors (or a tagger on its token vectors),
    measure it, compare students against the teacher, and export student and head as one ONNX graph.

    \b
    Example:
      distill head compare --data train.csv --test test.csv --run runs/default
      distill head train --model runs/default/students/static --data train.csv --output heads/intent
      distill head export --head heads/intent --output exports/intent --data test.csv
      distill serve --model exports/intent        # POST /v1/classify
    """


_HEAD_DATA = click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
                          help="Labelled texts: a .csv, .jsonl or .parquet file (text and label columns). A tokens "
                          "head's: a .conll file (a word and its tag per line, the tag last; a blank line between "
                          "sentences) or a .jsonl / .parquet file (word-list and tag-list columns).")  # fmt: skip
_TEXT_COLUMN = click.option("--text-column", default="text", show_default=True, help="Column holding the text.")
_LABEL_COLUMN = click.option("--label-column", default="label", show_default=True, help="Column holding the label.")
_WORDS_COLUMN = click.option("--words-column", default="tokens", show_default=True,
                             help="Tokens task, .jsonl / .parquet: the column of each sentence's words.")  # fmt: skip
_TAGS_COLUMN = click.option("--tags-column", default="tags", show_default=True,
                            help="Tokens task, .jsonl / .parquet: the column of each sentence's tags, one per "
                            "word (BIO / IOB2 like B-PER I-PER O, or plain).")  # fmt: skip
_PRECISION = click.option("--precision", type=click.Choice(["fp32", "int8"]), default="fp32", show_default=True,
                          help="Which graph of an export folder embeds the texts (other models: ignored).")  # fmt: skip
_VERBOSE = click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
_PER_CLASS = click.option("--per-class", type=click.IntRange(min=1), default=None,
                          help="Train on at most this many labelled texts a class, drawn with --seed (few-label "
                          "settings) [default: all].")  # fmt: skip
_TUNE = click.option("--tune", type=click.Choice(["none", "last", "query", "all"]), default="none", show_default=True,
                     help="What of the model trains with the head: none (a frozen model), its last layer, its "
                     "attention query projections, or all of it, embeddings included (a static student: all, its "
                     "table rows). A teacher is tuned as a transformer student.")  # fmt: skip


def _tuning_options(command: Any) -> Any:
    """The settings of --tune and of its contrastive start, with `TuneConfig`'s defaults."""
    from distill.heads.tune_config import TuneConfig

    options = [
        ("--epochs", click.IntRange(min=1), TuneConfig.epochs, "Epochs of tuning at most (early stopping)."),
        ("--patience", click.IntRange(min=1), TuneConfig.patience,
         "Epochs without a better held-out macro-F1 (a tagger's: entity F1)."),
        ("--lr", click.FloatRange(min=0, min_open=True), TuneConfig.lr, "The model's learning rate."),
        ("--head-lr", click.FloatRange(min=0, min_open=True), TuneConfig.head_lr, "The head's learning rate."),
        ("--table-lr", click.FloatRange(min=0, min_open=True), TuneConfig.table_lr,
         "A static student's table rows' learning rate [default: the best of 1e-3, 3e-3 and 1e-2 by held-out "
         "macro-F1]."),
        ("--batch-size", click.IntRange(min=1), TuneConfig.batch_size, "Texts a step."),
        ("--threads", click.IntRange(min=0), TuneConfig.threads, "Torch threads while tuning; 0: one per core."),
        ("--contrastive-epochs", click.IntRange(min=0), TuneConfig.contrastive_epochs,
         "Epochs of a contrastive start (SetFit's: same-label pairs towards cosine 1, others 0) before the head."),
        ("--pairs-per-text", click.IntRange(min=1), TuneConfig.pairs_per_text,
         "Same-label and as many other-label partners of each text, per contrastive epoch."),
    ]  # fmt: skip
    for flag, kind, default, help_ in reversed(options):
        command = click.option(flag, type=kind, default=default, show_default=True, help=help_)(command)
    return command


@head.command("train")
@click.option("--model", default="sentence-transformers/all-MiniLM-L6-v2", show_default=True,
              help="The frozen model whose vectors the head learns from: a saved student folder, an export "
              "folder (from `distill export`) or a teacher's folder or Hugging Face name; for --task tokens a "
              "transformer student or a teacher (token vectors in context).")  # fmt: skip
@_HEAD_DATA
@click.option("--task", type=click.Choice(["classify", "tokens"]), default="classify", show_default=True,
              help="classify: a label per text, from its sentence vector; tokens: a tag per word (NER, chunking), "
              "from the vector in context of the word's first sub-token.")  # fmt: skip
@_TEXT_COLUMN
@_LABEL_COLUMN
@_WORDS_COLUMN
@_TAGS_COLUMN
@click.option("--output", "output_dir", required=True, type=click.Path(file_okay=False),
              help="Head folder to write (head.json and head.safetensors).")  # fmt: skip
@click.option("--hidden", type=click.IntRange(min=0), default=0, show_default=True,
              help="Width of one hidden layer (an MLP); 0: a single linear layer (logistic regression).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the validation split and training.")
@_PER_CLASS
@_TUNE
@_tuning_options
@_PRECISION
@_VERBOSE
@_user_errors
def head_train(model: str, data_path: str, task: str, text_column: str, label_column: str, words_column: str,
               tags_column: str, output_dir: str, hidden: int, seed: int, per_class: int | None, tune: str,
               precision: str, verbose: bool, **tuning: Any) -> None:  # fmt: skip
    """Train a classification head on the frozen model's sentence vectors of a labelled file (or a tagger).

    Classes are weighted by inverse frequency. The linear head is logistic regression solved for each
    regularisation strength C of a grid, the C of best macro-F1 over 5 stratified folds refit on all the
    data; an MLP (--hidden) stops when the macro-F1 of a stratified held-out tenth stops improving. Prints
    the held-out metrics as one JSON object. With --task tokens, a tagger on token vectors (tags not
    weighted): a tenth of the sentences is held out, and their entity F1 chooses C (or stops the MLP).

    With --tune last|query|all the model trains with the head (its last layer, its attention query
    projections, or everything; a static student's table rows), from the frozen head fitted on the
    training rows, keeping the epoch of best held-out macro-F1. The tuned model is saved in the head
    folder (OUTPUT/model): its vectors are no longer the teacher's, and the head runs with it alone.
    A tagger tunes the same way (a transformer student or the teacher), keeping the epoch of best
    held-out entity F1.
    """
    import json

    from distill.errors import DistillError
    from distill.heads.classifier import train_classifier
    from distill.heads.data import encoder_for, read_labelled, with_progress
    from distill.heads.data import per_class as per_class_sample
    from distill.heads.head import HeadTrainConfig
    from distill.heads.tune_config import TuneConfig

    _setup_logging(verbose)
    config = TuneConfig(tune=tune, seed=seed, head=HeadTrainConfig(hidden=hidden, seed=seed), **tuning)
    if task == "tokens":
        if per_class:
            raise DistillError("--per-class is for --task classify: a tagged sentence has many tags")
        click.echo(json.dumps(head_steps.tagger_head(model, data_path, words_column, tags_column, output_dir, config)))
        return
    texts, labels = read_labelled(data_path, text_column, label_column)
    if per_class:
        texts, labels = per_class_sample(texts, labels, per_class, seed)
    if tune != "none":
        click.echo(json.dumps(head_steps.tuned_head(model, texts, labels, output_dir, config)))
        return
    encode, about = encoder_for(model, precision)
    vectors = with_progress(encode)(texts)
    trained = train_classifier(vectors, labels, HeadTrainConfig(hidden=hidden, seed=seed), model=model,
                               encoder=about)  # fmt: skip
    trained.save(output_dir)
    metrics = trained.config.metrics
    click.echo(json.dumps({"head": output_dir, "model": model, "classes": len(trained.labels),
                           "valid_macro_f1": metrics["valid_macro_f1"],
                           "valid_accuracy": metrics["valid_accuracy"]}))  # fmt: skip


@head.command("eval")
@click.option("--head", "head_dir", required=True, type=click.Path(file_okay=False),
              help="A head folder written by `distill head train`.")  # fmt: skip
@_HEAD_DATA
@click.option("--model", help="The model to embed the texts with [default: the one the head was trained on].")
@_PRECISION
@_TEXT_COLUMN
@_LABEL_COLUMN
@_WORDS_COLUMN
@_TAGS_COLUMN
@_VERBOSE
@_user_errors
def head_eval(head_dir: str, data_path: str, model: str | None, precision: str, text_column: str,
              label_column: str, words_column: str, tags_column: str, verbose: bool) -> None:  # fmt: skip
    """Measure a head on a labelled file: prints {"accuracy", "macro_f1", "n"} as one JSON object.

    A tokens head (`head train --task tokens`) reads a tagged file and prints {"entity_f1", "accuracy"
    (of words), "n" (sentences), "tokens" (words)}.
    """
    import json

    from distill.heads.classifier import evaluate_head
    from distill.heads.data import encoder_for, read_labelled, with_progress
    from distill.heads.head import ClassifierHead

    _setup_logging(verbose)
    from distill.heads.models import model_of

    trained = ClassifierHead.load(head_dir)
    if trained.config.task == "tokens":
        from distill.heads.tagging import evaluate_tagger, read_tagged, token_encoder_for

        sentences, tags = read_tagged(data_path, words_column, tags_column)
        encode, _ = token_encoder_for(model_of(head_dir, trained, model), progress=True)
        click.echo(json.dumps(evaluate_tagger(trained, encode, sentences, tags)))
        return
    texts, labels = read_labelled(data_path, text_column, label_column)
    encode, _ = encoder_for(model_of(head_dir, trained, model), precision)
    click.echo(json.dumps(evaluate_head(trained, with_progress(encode), texts, labels)))


@head.command("export")
@click.option("--head", "head_dir", required=True, type=click.Path(file_okay=False),
              help="A head folder written by `distill head train`.")  # fmt: skip
@click.option("--model", help="The model to join the head to: a saved student folder, an export folder or a "
              "teacher's folder or name [default: the one the head was trained on].")  # fmt: skip
@click.option("--output", "output_dir", required=True, type=click.Path(file_okay=False),
              help="Export folder to write: model.onnx and model_int8.onnx ending in the head, head.json, "
              "config.json, tokenizer.json, parity.json.")  # fmt: skip
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Texts for the parity check: a .txt file (one text a line) or a .csv, .jsonl or .parquet "
              "file (labels not needed).")  # fmt: skip
@click.option("--text-column", default="text", show_default=True, help="Column holding the text in a table.")
@click.option("--check-texts", type=click.IntRange(min=1), default=256, show_default=True,
              help="How many texts of --data (the first) the parity check uses.")  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@_user_errors
def head_export(head_dir: str, model: str | None, output_dir: str, data_path: str, text_column: str,
                check_texts: int, verbose: bool) -> None:  # fmt: skip
    """Join a head to its model in one ONNX graph per precision, with label probabilities out.

    The graphs keep the model's sentence_vectors output and add probabilities (batch, classes). The
    fp32 probabilities must match torch's to 1e-4 on the check texts, or nothing is written; int8's
    agreement is measured into parity.json. Prints the parity figures as one JSON object. Serve the folder
    with `distill serve` (POST /v1/classify) or load it with distill.runtime.OnnxClassifier.

    A tokens head (a tagger) is exported with its transformer student or teacher: the graphs add
    token_probabilities (batch, seq, tags), its word probabilities are checked against torch the same way,
    and --data may be its tagged file. Serve it with `distill serve` (POST /v1/tag) or load it with
    distill.runtime.OnnxTagger.
    """
    import json

    from distill.heads.export import export_head, read_texts

    _setup_logging(verbose)
    if Path(data_path).suffix.lower() in (".conll", ".jsonl", ".parquet") and _is_tagger(head_dir):
        from distill.heads.tagging import read_tagged

        texts = [" ".join(words) for words in read_tagged(data_path)[0][:check_texts]]  # a tagger's parity data
    else:
        texts = read_texts(data_path, text_column, limit=check_texts)
    parity = export_head(head_dir, model, output_dir, texts=texts)
    figures = parity["head"]
    head_steps.head_card(output_dir, parity, head_dir)
    click.echo(json.dumps({"export": output_dir, "labels": figures["labels"], "texts": figures["texts"],
                           "fp32": figures["fp32"], "int8": figures["int8"]}))  # fmt: skip


def _is_tagger(head_dir: str) -> bool:
    from distill.heads.head import ClassifierHead

    return ClassifierHead.load(head_dir).config.task == "tokens"


@head.command("compare")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Labelled training data, as `head train --data` takes it for the task.")  # fmt: skip
@click.option("--test", "test_path", required=True, type=click.Path(dir_okay=False),
              help="Labelled test data of the same form; the table scores every head on it.")  # fmt: skip
@click.option("--models", default="teacher,static,transformer,tokengen", show_default=True,
              help="Comma-separated models: 'teacher' (the run's), a student's name in the run, or any model "
              "`head train --model` takes (a student folder, an export folder, a teacher). For --task tokens, "
              "only models with token vectors in context: the teacher and transformer students.")  # fmt: skip
@click.option("--run", "run_dir", default="runs/default", show_default=True, type=click.Path(file_okay=False),
              help="The run whose teacher and students the names refer to.")  # fmt: skip
@click.option(
    "--task",
    type=click.Choice(["classify", "tokens"]),
    default="classify",
    show_default=True,
    help="classify: accuracy and macro-F1 of a label per text; tokens: entity F1 of a tag per word.",
)
@_TEXT_COLUMN
@_LABEL_COLUMN
@_WORDS_COLUMN
@_TAGS_COLUMN
@click.option("--hidden", type=click.IntRange(min=0), default=0, show_default=True,
              help="Width of the heads' hidden layer; 0: logistic regression.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every head's split and training.")
@click.option("--output", "output_dir", type=click.Path(file_okay=False),
              help="Folder for compare.json, compare.md and the heads [default: RUN/heads/compare].")  # fmt: skip
@click.option("--tune", "tunes", default="none", show_default=True,
              help="Comma-separated tune settings, a row each per model: none (the frozen head), last, query, "
              "all (as `head train --tune`); a setting a model cannot take is left out for it.")  # fmt: skip
@_PER_CLASS
@_tuning_options
@_PRECISION
@_VERBOSE
@_user_errors
def head_compare(data_path: str, test_path: str, models: str, run_dir: str, task: str, text_column: str,
                 label_column: str, words_column: str, tags_column: str, hidden: int, seed: int,
                 output_dir: str | None, tunes: str, per_class: int | None, precision: str, verbose: bool,
                 **tuning: Any) -> None:  # fmt: skip
    """Train the same head on the teacher and on each student, and score them side by side on test data.

    The table gives each model's scores, the difference to the teacher's in points, and its texts/s
    embedding the test texts as a multiple of the teacher's (measured in this process, in turns). With
    --tune none,last,all each model gets a row per setting, its head trained together with the model
    (`head train --tune`), and the table adds the seconds of training and the model's size.
    """
    import dataclasses
    import json

    from distill.heads.data import per_class as per_class_sample
    from distill.heads.data import read_labelled
    from distill.heads.head import HeadTrainConfig
    from distill.heads.tagging import read_tagged
    from distill.heads.tune_config import TuneConfig
    from eval.head_compare import Labelled, as_json, compare_heads, markdown_table, resolve_models

    _setup_logging(verbose)
    names = [name.strip() for name in models.split(",") if name.strip()]
    settings = [t.strip() for t in tunes.split(",") if t.strip()]
    tune_config = TuneConfig(seed=seed, **tuning)
    for setting in settings:  # NOTE: refuses an unknown setting before any work ("none": the frozen row)
        dataclasses.replace(tune_config, tune=setting, contrastive_epochs=0 if setting == "none" else 1)
    resolved = resolve_models(names, run_dir)
    if task == "tokens":
        train, test = (Labelled(*read_tagged(path, words_column, tags_column)) for path in (data_path, test_path))
    else:
        train, test = (Labelled(*read_labelled(path, text_column, label_column)) for path in (data_path, test_path))
    if per_class:
        train = Labelled(*per_class_sample(train.texts, train.labels, per_class, seed))
    out = Path(output_dir or Path(run_dir) / "heads" / "compare")
    rows = compare_heads(resolved, train, test, HeadTrainConfig(hidden=hidden, seed=seed), task=task,
                         heads_dir=out / "heads", precision=precision, tunes=settings, tuning=tune_config)  # fmt: skip
    table = markdown_table(rows)
    out.mkdir(parents=True, exist_ok=True)
    about = {"task": task, "train": data_path, "test": test_path, "n_train": len(train.texts),
             "n_test": len(test.texts), "hidden": hidden, "seed": seed, "precision": precision,
             "per_class": per_class, "tune": settings, "tuning": dataclasses.asdict(tune_config)}  # fmt: skip
    (out / "compare.json").write_text(json.dumps(as_json(rows, **about), indent=2) + "\n", encoding="utf-8")
    (out / "compare.md").write_text(table, encoding="utf-8")
    click.echo(table + f"\nwritten: {out / 'compare.json'}, {out / 'compare.md'}, heads in {out / 'heads'}")
