"""Classification heads on a frozen student: data reading, training, save / load, evaluation and the CLI."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from transformers import BertTokenizerFast

from distill.cli.commands import main
from distill.errors import DistillError
from distill.export.exporter import export_student
from distill.heads.classifier import evaluate_head, train_classifier
from distill.heads.data import encoder_for, read_labelled, with_progress
from distill.heads.head import ClassifierHead, HeadTrainConfig, stratified_split
from students.static import StaticConfig, StaticStudent

TOPICS = {
    "sport": "football goal match team player coach stadium league referee score",
    "food": "pasta garlic tomato bread cheese soup kitchen recipe oven salad",
    "music": "violin guitar orchestra song concert piano melody drum singer album",
}
FILLER = ["the", "a", "and", "of", "on", "with", "in", "at", "today"]


def _sentences(n_per_class: int, seed: int) -> pd.DataFrame:
    """Sentences of four topic words among filler: three classes a bag of words separates."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, words in TOPICS.items():
        for _ in range(n_per_class):
            picked = list(rng.choice(words.split(), 4)) + list(rng.choice(FILLER, 3))
            rows.append({"text": " ".join(rng.permutation(picked)), "label": label})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def student_dir(tokenizer: BertTokenizerFast, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 32-wide static student with a random table over the real vocabulary."""
    config = StaticConfig(dim=32, vocab_size=tokenizer.vocab_size, max_length=32, teacher="tiny", factored=False)
    student = StaticStudent(config, tokenizer.backend_tokenizer)
    student.init_table(np.random.default_rng(0).standard_normal((tokenizer.vocab_size, 32)))
    return student.save(tmp_path_factory.mktemp("heads") / "student")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train and test files of the same classes, as csv, jsonl and parquet."""
    folder = tmp_path_factory.mktemp("data")
    train, test = _sentences(40, seed=0), _sentences(15, seed=1)
    train.to_csv(folder / "train.csv", index=False)
    train.to_json(folder / "train.jsonl", orient="records", lines=True)
    train.to_parquet(folder / "train.parquet")
    test.to_csv(folder / "test.csv", index=False)
    return {"csv": folder / "train.csv", "jsonl": folder / "train.jsonl", "parquet": folder / "train.parquet",
            "test": folder / "test.csv"}  # fmt: skip


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_every_file_type_reads_the_same_texts_and_labels(data: dict[str, Path], kind: str) -> None:
    texts, labels = read_labelled(data[kind], "text", "label")
    expected = read_labelled(data["csv"], "text", "label")
    assert (texts, labels) == expected and len(texts) == 120 and set(labels) == set(TOPICS)


@pytest.mark.parametrize("hidden", [0, 16])
def test_a_head_on_a_frozen_student_learns_separable_classes(
    student_dir: Path, data: dict[str, Path], tmp_path: Path, hidden: int
) -> None:
    encode, about = encoder_for(str(student_dir))
    assert about.startswith("static student")
    texts, labels = read_labelled(data["csv"], "text", "label")
    head = train_classifier(encode(texts), labels, HeadTrainConfig(hidden=hidden), model=str(student_dir))
    assert head.labels == sorted(TOPICS) and head.config.kind == ("mlp" if hidden else "linear")
    assert head.config.metrics["valid_macro_f1"] > 0.9
    test_texts, test_labels = read_labelled(data["test"], "text", "label")
    result = evaluate_head(head.save(tmp_path / "head"), encode, test_texts, test_labels)
    assert result["accuracy"] > 0.9 and result["macro_f1"] > 0.9 and result["n"] == 45


def test_save_load_round_trip_gives_identical_predictions(student_dir: Path, data: dict[str, Path],
                                                          tmp_path: Path) -> None:  # fmt: skip
    encode, _ = encoder_for(str(student_dir))
    texts, labels = read_labelled(data["csv"], "text", "label")
    vectors = encode(texts)
    head = train_classifier(vectors, labels, HeadTrainConfig(hidden=8), model=str(student_dir))
    loaded = ClassifierHead.load(head.save(tmp_path / "head"))
    assert loaded.config == head.config
    saved = json.loads((tmp_path / "head" / "head.json").read_text())
    assert saved["kind"] == "mlp" and saved["config"]["dim"] == 32 and saved["config"]["model"] == str(student_dir)
    np.testing.assert_array_equal(loaded(_tensor(vectors)).detach().numpy(), head(_tensor(vectors)).detach().numpy())
    assert loaded.predict(vectors) == head.predict(vectors)


def _tensor(vectors: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(vectors)


def test_training_is_deterministic_for_a_seed() -> None:
    vectors, labels = _clusters([60, 60, 60], spread=1.5, seed=0)
    a, b = (train_classifier(vectors, labels, HeadTrainConfig(seed=3)) for _ in range(2))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=name)
    assert a.config.metrics == b.config.metrics


def test_the_validation_split_is_stratified_and_seeded() -> None:
    label_ids = np.array([0] * 90 + [1] * 10)
    train, valid = stratified_split(label_ids, 0.1, seed=0)
    assert np.bincount(label_ids[valid]).tolist() == [9, 1] and len(train) + len(valid) == 100
    assert not set(train) & set(valid)
    np.testing.assert_array_equal(valid, stratified_split(label_ids, 0.1, seed=0)[1])


def test_class_weights_make_a_rare_class_heard() -> None:
    """On overlapping, imbalanced classes the weighted head finds more of the rare class than an unweighted one."""
    vectors, labels = _clusters([950, 50], spread=1.0, seed=1)
    weighted = train_classifier(vectors, labels)
    plain = train_classifier(vectors, labels, HeadTrainConfig(balanced=False))
    weights = weighted.config.metrics["class_weights"]
    assert weights["c1"] > 5 * weights["c0"]
    assert plain.config.metrics["class_weights"] == {"c0": 1.0, "c1": 1.0}
    rare = [i for i, label in enumerate(labels) if label == "c1"]
    recall_weighted = weighted.predict(vectors[rare]).count("c1") / len(rare)
    recall_plain = plain.predict(vectors[rare]).count("c1") / len(rare)
    assert recall_weighted > 0.8 and recall_weighted > recall_plain + 0.2


def _clusters(sizes: list[int], spread: float, seed: int) -> tuple[np.ndarray, list[str]]:
    """Gaussian clusters in 8 dimensions, one per class, around centres 2 from the origin on separate axes."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[: len(sizes)] * 2
    vectors = np.concatenate([centres[i] + spread * rng.standard_normal((n, 8)) for i, n in enumerate(sizes)])
    labels = [f"c{i}" for i, n in enumerate(sizes) for _ in range(n)]
    return vectors.astype(np.float32), labels


def test_an_export_folder_encodes_as_its_student(student_dir: Path, tmp_path: Path) -> None:
    import students

    texts = _sentences(3, seed=2)["text"].tolist()
    export_student(students.load(student_dir), tmp_path / "export", name="static", texts=texts)
    encode, about = encoder_for(str(tmp_path / "export"))
    assert about.startswith("static export")
    np.testing.assert_allclose(encode(texts), encoder_for(str(student_dir))[0](texts), atol=1e-5)
    int8, about = encoder_for(str(tmp_path / "export"), "int8")
    assert about.endswith("(int8)")
    assert np.mean(np.sum(int8(texts) * encode(texts), axis=1)) > 0.99  # the int8 table: close, not equal


BAD_FILES = {
    "missing": (None, "does not exist"),
    "empty.csv": ("", "is empty"),
    "columns.csv": (
        "sentence,label\nhello there,a\nbye,b\n",
        "has no column 'text'; its columns are 'sentence', 'label'",
    ),
    "one_class.csv": ("text,label\nhello there,a\nbye now,a\n", "at least 2 classes"),
    "empty_text.csv": ("text,label\nhello there,a\n,b\n", "empty 'text' (first: row 2)"),
    "no_label.jsonl": ('{"text": "hi", "label": "a"}\n{"text": "yo", "label": null}\n', "have no 'label'"),
    "table.txt": ("text,label\n", "unsupported file type"),
    "broken.jsonl": ('{"text": "hi"\n', "cannot be read as jsonl"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_data_is_one_clear_error(tmp_path: Path, name: str) -> None:
    content, message = BAD_FILES[name]
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(DistillError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_labelled(tmp_path / name, "text", "label")


@pytest.mark.parametrize("name", ["missing", "columns.csv", "one_class.csv", "empty_text.csv"])
def test_cli_bad_data_is_one_line_and_exit_2(tmp_path: Path, student_dir: Path, name: str) -> None:
    content, message = BAD_FILES[name]
    if content is not None:
        (tmp_path / name).write_text(content)
    result = CliRunner().invoke(main, ["head", "train", "--model", str(student_dir), "--data", str(tmp_path / name),
                                       "--output", str(tmp_path / "head")])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "head").exists()


def test_cli_not_a_head_or_model_is_one_line_and_exit_2(tmp_path: Path, data: dict[str, Path]) -> None:
    no_head = CliRunner().invoke(main, ["head", "eval", "--head", str(tmp_path), "--data", str(data["test"])])
    assert no_head.exit_code == 2 and "not a head folder" in no_head.output
    no_model = CliRunner().invoke(main, ["head", "train", "--model", str(tmp_path / "nope"), "--data",
                                         str(data["csv"]), "--output", str(tmp_path / "head")])  # fmt: skip
    assert no_model.exit_code == 2 and "Traceback" not in no_model.output, no_model.output


def test_cli_trains_then_evaluates_printing_json(student_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    head_dir = tmp_path / "head"
    trained = CliRunner().invoke(main, ["head", "train", "--model", str(student_dir), "--data", str(data["jsonl"]),
                                        "--output", str(head_dir), "--hidden", "0", "--seed", "1"])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert (head_dir / "head.json").is_file() and (head_dir / "head.safetensors").is_file()
    result = CliRunner().invoke(main, ["head", "eval", "--head", str(head_dir), "--data", str(data["test"])])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"] > 0.9 and report["macro_f1"] > 0.9 and report["n"] == 45
    import students

    export_student(students.load(student_dir), tmp_path / "export", name="static", texts=["a text", "another"])
    on_int8 = CliRunner().invoke(main, ["head", "eval", "--head", str(head_dir), "--data", str(data["test"]),
                                        "--model", str(tmp_path / "export"), "--precision", "int8"])  # fmt: skip
    assert on_int8.exit_code == 0, on_int8.output
    assert json.loads(on_int8.stdout)["accuracy"] > 0.9  # the same head on the export's int8 graph
    int8_head = CliRunner().invoke(main, ["head", "train", "--model", str(tmp_path / "export"), "--precision", "int8",
                                          "--data", str(data["jsonl"]), "--output", str(tmp_path / "h8")])  # fmt: skip
    assert int8_head.exit_code == 0, int8_head.output
    assert "(int8)" in json.loads((tmp_path / "h8" / "head.json").read_text())["config"]["encoder"]


def test_head_commands_have_help() -> None:
    for command in (["head"], ["head", "train"], ["head", "eval"]):
        result = CliRunner().invoke(main, [*command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_the_linear_head_is_scikit_learns_logistic_regression_solved(student_dir: Path, data: dict[str, Path]) -> None:
    """Solved, not stopped early: the same optimum as LogisticRegression(C, class_weight="balanced")."""
    from sklearn.linear_model import LogisticRegression

    texts, labels = read_labelled(data["csv"])
    encode, _ = encoder_for(str(student_dir))
    vectors = encode(texts)[:100]  # three classes of unequal size: the class weights matter
    labels = labels[:100]
    head = train_classifier(vectors, labels, HeadTrainConfig(c_grid=(0.5,)))
    assert head.config.metrics["c"] == 0.5 and head.config.metrics["refit"]
    reference = LogisticRegression(C=0.5, class_weight="balanced", tol=1e-8, max_iter=10_000).fit(vectors, labels)
    with torch.no_grad():
        ours = torch.softmax(head(torch.from_numpy(vectors)), dim=1).numpy()
    assert head.labels == list(reference.classes_)
    np.testing.assert_allclose(ours, reference.predict_proba(vectors), atol=2e-3)


def test_c_is_chosen_by_cross_validation_and_one_example_a_class_still_trains(student_dir: Path) -> None:
    vectors = np.random.default_rng(0).standard_normal((60, 32)).astype(np.float32)
    labels = ["a" if v[0] > 0 else "b" for v in vectors]
    head = train_classifier(vectors, labels)
    metrics = head.config.metrics
    by_c = metrics["score_by_c"]
    assert metrics["c_chosen_by"] == "5-fold cross-validation" and set(by_c) == {"0.1", "1", "10", "100"}
    assert by_c[f"{metrics['c']:g}"] == max(by_c.values())
    lone = train_classifier(vectors[:2], ["a", "b"])  # nothing to fold or hold out
    assert lone.config.metrics["c_chosen_by"] == "validation split" and lone.predict(vectors[:2]) == ["a", "b"]


def test_with_progress_embeds_in_chunks_in_order() -> None:
    calls = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.array([[float(t)] for t in texts])

    texts = [str(i) for i in range(10)]
    np.testing.assert_array_equal(with_progress(encode, chunk=4)(texts).ravel(), np.arange(10))
    assert calls == [4, 4, 2]
    assert with_progress(encode, chunk=64)(texts[:3]).shape == (3, 1) and calls[-1] == 3  # one call, no bar
