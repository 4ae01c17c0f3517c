"""What `distill head train` and `distill head export` do once their options are read: train a head with its model
(`--tune`), train a tagger, and write an export's card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def tuned_head(model: str, texts: list[str], labels: list[str], output_dir: str, config: Any) -> dict[str, Any]:
    """`head train --tune`: train the model and head together, save both; what it prints."""
    from distill.heads.models import as_student, load_model
    from distill.heads.tuning import save_tuned, tune_classifier

    student = as_student(load_model(model), model)
    trained = tune_classifier(student, texts, labels, config, model=model, encoder=model_about(student, model))
    save_tuned(trained, student, output_dir)
    metrics = trained.config.metrics
    return {"head": output_dir, "model": model, **tuned_summary(metrics, config.tune, output_dir),
            "classes": len(trained.labels), "texts": len(texts), "valid_macro_f1": metrics["valid_macro_f1"],
            "valid_accuracy": metrics["valid_accuracy"]}  # fmt: skip


def tagger_head(model: str, data_path: str, words_column: str, tags_column: str, output_dir: str,
                config: Any) -> dict[str, Any]:  # fmt: skip
    """`head train --task tokens`: train and save a tagger (with its model, with --tune); what it prints."""
    from distill.heads.tagging import read_tagged, token_encoder_for, train_tagger

    sentences, tags = read_tagged(data_path, words_column, tags_column)
    if config.tune != "none":
        from distill.heads.models import as_student, load_model
        from distill.heads.tune_tagger import tune_tagger
        from distill.heads.tuning import save_tuned

        student = as_student(load_model(model), model)
        trained = tune_tagger(student, sentences, tags, config, model=model, encoder=model_about(student, model))
        save_tuned(trained, student, output_dir)
        tuned = tuned_summary(trained.config.metrics, config.tune, output_dir)
    else:
        encode, about = token_encoder_for(model, progress=True)
        trained, tuned = train_tagger(encode(sentences), tags, config.head, model=model, encoder=about), {}
        trained.save(output_dir)
    metrics = trained.config.metrics
    return {"head": output_dir, "model": model, "task": "tokens", "tags": len(trained.labels), **tuned,
            "valid_entity_f1": metrics["valid_entity_f1"], "valid_accuracy": metrics["valid_accuracy"]}  # fmt: skip


def model_about(student: Any, model: str) -> str:
    """What a model tuned from `model` was, for its head's "encoder"."""
    return f"{student.kind} student {model}" if student.config.teacher != model else f"teacher {model}"


def tuned_summary(metrics: dict[str, Any], tune: str, output_dir: str) -> dict[str, Any]:
    """What `head train --tune` prints of the tuning (and says on stderr: its time)."""
    click.echo(f"tuned ({tune}) in {metrics['tune']['seconds']:.1f}s, best epoch {metrics['best_epoch']} of "
               f"{metrics['epochs_run']}", err=True)  # fmt: skip
    from distill.heads.models import TUNED_MODEL_DIR

    return {"tune": tune, "tuned_model": str(Path(output_dir) / TUNED_MODEL_DIR), "best_epoch": metrics["best_epoch"],
            "seconds": metrics["tune"]["seconds"]}  # fmt: skip


def head_card(output_dir: str, parity: dict[str, Any], head_dir: str) -> None:
    """The export's README.md: the Hub's metadata and what the export measured of the head."""
    import json

    from distill.cards import Figure, export_card, teacher_license

    config = json.loads((Path(output_dir) / "config.json").read_text(encoding="utf-8"))
    teacher = config.get("teacher", "")
    head, command = parity["head"], f"distill head export --head {head_dir} --output {output_dir}"
    task = head.get("task", "classify")
    figures = {
        f"{precision}: max abs difference of the probabilities to torch": Figure(
            f"{head[precision]['max_abs_difference']:.1e}", command
        )
        for precision in ("fp32", "int8")
    }
    figures["int8: same top label as torch"] = Figure(f"{head['int8']['agreement']:.2%}", command)
    figures["labels"] = Figure(", ".join(head["labels"]), command)
    card = export_card(Path(output_dir).name, Path(output_dir), teacher, figures, teacher_license(teacher), head=task)
    tune = config.get("tune", "none")
    if tune != "none":
        card.about += (f" The model was trained together with its head (`distill head train --tune {tune}`): its "
                       "`sentence_vectors` are no longer the teacher's, so use them for this task only.")  # fmt: skip
        card.about += (" This folder also holds the untuned model the head was tuned from, in `embeddings/`: "
                       "`distill serve` answers `POST /v1/embeddings` with it (vectors in the teacher's space), and "
                       "`distill.runtime.embeddings_of(folder)` loads it." if config.get("embeddings") else
                       " The untuned model could not be exported, so `POST /v1/embeddings` of this folder is "
                       "refused; serve the untuned student's export for embeddings.")  # fmt: skip
        figures["model tuned with the head"] = Figure(tune, f"distill head train --tune {tune}")
    card.write(output_dir)
