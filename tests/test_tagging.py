"""The tokens task: tagged data, word vectors in context, the tagger, entity F1 and the CLI."""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from transformers import BertTokenizerFast

from distill.cli.commands import main
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.heads.classifier import evaluate_head
from distill.heads.head import ClassifierHead, HeadTrainConfig
from distill.heads.tagging import (
    entity_f1,
    entity_spans,
    evaluate_tagger,
    fallback_tag,
    first_subtokens,
    predict_tags,
    read_tagged,
    teacher_token_encoder,
    token_encoder_for,
    train_tagger,
)
from distill.teacher.model import Teacher
from students.base import prepare_tokenizer
from students.static import StaticConfig, StaticStudent
from students.transformer import TransformerStudent
from tests import families

FIRST = ["alice", "john", "maria", "peter", "anna", "david"]
LAST = ["smith", "jones", "brown", "miller", "garcia", "wilson"]
PLACES = ["paris", "london", "berlin", "madrid", "rome", "tokyo"]
FILLER = ["yesterday", "today", "visited", "flew", "to", "from", "met", "in", "and", "the", "with", "went", "saw"]
QUICK = HeadTrainConfig(epochs=20)  # where the test is not about how well the head learns


def _tagged(n: int, seed: int) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences of two people (B-PER I-PER), a place (B-LOC) and filler words (O), in a random order."""
    rng = np.random.default_rng(seed)
    sentences, tags = [], []
    for _ in range(n):
        words, sentence_tags = [], []
        for part in rng.permutation(["person", "person", "place", "filler", "filler"]):
            if part == "person":
                words += [rng.choice(FIRST), rng.choice(LAST)]
                sentence_tags += ["B-PER", "I-PER"]
            elif part == "place":
                words.append(rng.choice(PLACES))
                sentence_tags.append("B-LOC")
            else:
                count = int(rng.integers(1, 3))
                words += list(rng.choice(FILLER, count))
                sentence_tags += ["O"] * count
        sentences.append([str(w) for w in words])
        tags.append(sentence_tags)
    return sentences, tags


def _conll(sentences: list[list[str]], tags: list[list[str]]) -> str:
    """CoNLL-2003's layout: -DOCSTART-, then word, POS, chunk and NER tag a line, a blank line between sentences."""
    blocks = ["-DOCSTART- -X- -X- O\n"]
    for words, sentence_tags in zip(sentences, tags, strict=True):
        blocks.append("".join(f"{w} NN I-NP {t}\n" for w, t in zip(words, sentence_tags, strict=True)))
    return "\n".join(blocks)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train data as .conll, .jsonl and .parquet, and test data as .conll."""
    folder = tmp_path_factory.mktemp("tagged")
    (sentences, tags), test = _tagged(120, seed=0), _tagged(40, seed=1)
    (folder / "train.conll").write_text(_conll(sentences, tags))
    (folder / "test.conll").write_text(_conll(*test))
    frame = pd.DataFrame({"tokens": sentences, "tags": tags})
    frame.to_json(folder / "train.jsonl", orient="records", lines=True)
    frame.to_parquet(folder / "train.parquet")
    return {"conll": folder / "train.conll", "jsonl": folder / "train.jsonl", "parquet": folder / "train.parquet",
            "test": folder / "test.conll"}  # fmt: skip


@pytest.fixture(scope="module")
def transformer_dir(tiny_teacher: Teacher, tiny_targets: Targets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A transformer student with all of the tiny teacher's layers, saved."""
    student = TransformerStudent.from_teacher(tiny_teacher, tiny_targets, layers=[0, 1])
    return student.save(tmp_path_factory.mktemp("tagging") / "transformer")


@pytest.mark.parametrize("kind", ["conll", "jsonl", "parquet"])
def test_every_file_type_reads_the_same_sentences_and_tags(data: dict[str, Path], kind: str) -> None:
    sentences, tags = read_tagged(data[kind])
    assert (sentences, tags) == _tagged(120, seed=0)


def test_conll_reads_the_last_field_as_the_tag_and_skips_docstart(tmp_path: Path) -> None:
    text = "-DOCSTART- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n-DOCSTART- O\nPeter B-PER\nBlackburn I-PER"
    (tmp_path / "a.conll").write_text(text)
    assert read_tagged(tmp_path / "a.conll") == ([["EU", "rejects"], ["Peter", "Blackburn"]],
                                                 [["B-ORG", "O"], ["B-PER", "I-PER"]])  # fmt: skip


@pytest.mark.parametrize("hidden", [0, 16])
def test_a_tagger_on_the_teacher_finds_the_entities(tiny_teacher: Teacher, data: dict[str, Path], hidden: int) -> None:
    encode = teacher_token_encoder(tiny_teacher)
    sentences, tags = read_tagged(data["conll"])
    config = HeadTrainConfig(hidden=hidden)
    head = train_tagger(encode(sentences), tags, config, model="tiny", encoder="teacher tiny")
    assert head.config.task == "tokens" and head.labels == ["B-LOC", "B-PER", "I-PER", "O"]
    metrics = head.config.metrics
    assert metrics["valid_entity_f1"] > 0.9 and metrics["n_valid_sentences"] == 12
    assert metrics["n_train"] + metrics["n_valid"] == sum(map(len, tags))
    assert set(metrics["class_weights"].values()) == {1.0}  # a tagger's tags are not weighted unless asked
    result = evaluate_tagger(head, encode, *read_tagged(data["test"]))
    assert result["entity_f1"] > 0.9 and result["accuracy"] > 0.9
    assert result["n"] == 40 and result["tokens"] == sum(map(len, _tagged(40, seed=1)[1]))


@pytest.mark.parametrize("prompt", ["", "query: "])
def test_words_of_several_sub_tokens_read_their_first_in_context(
    tiny_teacher: Teacher, tokenizer: BertTokenizerFast, prompt: str
) -> None:
    """The word vector is the teacher's token vector of the word's first piece, as transformers aligns words."""
    teacher = Teacher(tiny_teacher.model, tokenizer, max_length=64, prompt=prompt, name="tiny")
    words = ["Zanzibarians", "visited", "Copenhagen", ",", "don't", "worry", "!"]
    ids, (first,) = first_subtokens(prepare_tokenizer(tokenizer.backend_tokenizer, 64), [words], prompt)
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()
    shift = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])  # the prompt's tokens come first
    assert first.tolist() == [word_ids.index(w) + shift for w in range(len(words))]
    assert ids[0] == teacher.tokenize([" ".join(words)])["input_ids"][0].tolist()
    assert len(ids[0]) > shift + len(words) + 2  # some words are several pieces
    (vectors,) = teacher_token_encoder(teacher)([words])
    expected = teacher.forward([" ".join(words)]).token_vectors[0, first].numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_a_roberta_tokenizer_aligns_after_its_start_token() -> None:
    """Byte-level BPE: the words read as running text (same ids as the sentence), <s> and </s> skipped."""
    sentences, _ = _tagged(30, seed=2)
    teacher = families.tiny_teacher("roberta", [" ".join(s) for s in sentences])
    backend = teacher.tokenizer.backend_tokenizer
    words = sentences[0]
    ids, (first,) = first_subtokens(backend, [words])
    assert ids[0] == teacher.tokenize([" ".join(words)])["input_ids"][0].tolist()
    assert ids[0][0] == teacher.tokenizer.bos_token_id and ids[0][-1] == teacher.tokenizer.eos_token_id
    prefix_lengths = [len(backend.encode(" ".join(words[:w]), add_special_tokens=False).ids) for w in range(len(words))]
    assert first.tolist() == [1 + n for n in prefix_lengths]
    (vectors,) = teacher_token_encoder(teacher)([words])
    np.testing.assert_allclose(vectors, teacher.forward([" ".join(words)]).token_vectors[0, first].numpy(), atol=1e-5)


def test_words_past_the_max_length_get_the_fallback_tag_and_a_warning(
    tiny_teacher: Teacher, tokenizer: BertTokenizerFast, caplog: pytest.LogCaptureFixture
) -> None:
    short = Teacher(tiny_teacher.model, tokenizer, max_length=8, name="short")
    encode = teacher_token_encoder(short)
    sentences, tags = _tagged(60, seed=3)
    vectors = encode(sentences)
    missing = [int(np.isnan(v).any(axis=1).sum()) for v in vectors]
    assert all(np.isnan(v[6:]).all() and not np.isnan(v[:6]).any() for v in vectors)  # 8 = [CLS] + 6 words + [SEP]
    head = train_tagger(vectors, tags, QUICK)
    assert head.config.metrics["words_without_vector"] == sum(missing)
    with caplog.at_level(logging.WARNING, logger="distill.heads.tagging"):
        predicted = predict_tags(head, vectors)
    assert all(p[6:] == ["O"] * (len(p) - 6) for p in predicted)
    assert f"{sum(missing)} of {sum(map(len, tags))} words have no vector" in caplog.text
    result = evaluate_tagger(head, encode, sentences, tags)
    assert result["tokens"] == sum(map(len, tags)) and 0 < result["entity_f1"] < 1


def test_the_fallback_is_the_most_frequent_tag_without_o() -> None:
    vectors = [np.eye(4, dtype=np.float32)[[0, 1, 1]], np.eye(4, dtype=np.float32)[[1]]]
    head = train_tagger(vectors, [["PER", "LOC", "LOC"], ["LOC"]], QUICK)
    assert fallback_tag(head) == "LOC"
    missing = np.full((1, 4), np.nan, dtype=np.float32)
    assert predict_tags(head, [missing, vectors[0]]) == [["LOC"], head.predict(vectors[0])]


def test_save_load_round_trip_gives_identical_tags(tiny_teacher: Teacher, data: dict[str, Path],
                                                   tmp_path: Path) -> None:  # fmt: skip
    vectors = teacher_token_encoder(tiny_teacher)(read_tagged(data["conll"])[0])
    head = train_tagger(vectors, read_tagged(data["conll"])[1], HeadTrainConfig(hidden=8, epochs=20), model="tiny")
    loaded = ClassifierHead.load(head.save(tmp_path / "head"))
    assert loaded.config == head.config
    assert json.loads((tmp_path / "head" / "head.json").read_text())["config"]["task"] == "tokens"
    assert predict_tags(loaded, vectors) == predict_tags(head, vectors)
    with pytest.raises(DistillError, match="tokens head"):
        evaluate_head(loaded, lambda texts: np.zeros((len(texts), 32)), ["a"], ["O"])


def test_a_head_json_without_a_task_is_a_classifier(tmp_path: Path) -> None:
    """Heads saved before the tokens task keep loading as classifiers, and the tagger refuses them."""
    head = train_tagger([np.eye(4, dtype=np.float32)[[0, 1]]] * 4, [["B-PER", "O"]] * 4, QUICK)
    head.save(tmp_path / "head")
    saved = json.loads((tmp_path / "head" / "head.json").read_text())
    del saved["config"]["task"]
    (tmp_path / "head" / "head.json").write_text(json.dumps(saved))
    old = ClassifierHead.load(tmp_path / "head")
    assert old.config.task == "classify"
    with pytest.raises(DistillError, match="trained for the classify task"):
        evaluate_tagger(old, lambda sentences: [], [], [])


def test_a_transformer_student_gives_the_teachers_word_vectors(
    tiny_teacher: Teacher, transformer_dir: Path, data: dict[str, Path]
) -> None:
    encode, about = token_encoder_for(str(transformer_dir))
    assert about.startswith("transformer student")
    sentences = read_tagged(data["test"])[0][:8]
    for student, teacher in zip(encode(sentences), teacher_token_encoder(tiny_teacher)(sentences), strict=True):
        np.testing.assert_allclose(student, teacher, atol=1e-5)


def test_models_without_token_vectors_in_context_are_refused_in_one_line(
    tokenizer: BertTokenizerFast, tmp_path: Path, data: dict[str, Path]
) -> None:
    config = StaticConfig(dim=16, vocab_size=tokenizer.vocab_size, max_length=32, teacher="tiny", factored=False)
    static = StaticStudent(config, tokenizer.backend_tokenizer)
    static.init_table(np.zeros((tokenizer.vocab_size, 16)))
    static.save(tmp_path / "static")
    message = "is a static student, which gives one vector per token regardless of context: use a transformer"
    with pytest.raises(DistillError, match=message):
        token_encoder_for(str(tmp_path / "static"))
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "config.json").write_text("{}")
    (tmp_path / "export" / "model.onnx").write_bytes(b"")
    with pytest.raises(DistillError, match="is an ONNX export, which gives sentence vectors only"):
        token_encoder_for(str(tmp_path / "export"))
    result = CliRunner().invoke(main, ["head", "train", "--task", "tokens", "--model", str(tmp_path / "static"),
                                       "--data", str(data["conll"]), "--output", str(tmp_path / "head")])  # fmt: skip
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "head").exists()


SPANS = [
    (["B-PER", "I-PER", "O", "B-LOC"], {("PER", 0, 2), ("LOC", 3, 4)}),
    (["O", "I-PER", "I-PER"], {("PER", 1, 3)}),  # I- without a B- begins an entity
    (["B-PER", "I-LOC", "I-LOC"], {("PER", 0, 1), ("LOC", 1, 3)}),  # I- of another type begins one too
    (["B-PER", "B-PER", "I-PER"], {("PER", 0, 1), ("PER", 1, 3)}),  # B- always begins one
    (["PER", "PER", "O", "LOC", "PER"], {("PER", 0, 2), ("LOC", 3, 4), ("PER", 4, 5)}),  # IO: runs of a tag
    (["O", "O"], set()),
    ([], set()),
]


@pytest.mark.parametrize(("tags", "spans"), SPANS)
def test_entity_spans(tags: list[str], spans: set) -> None:
    assert entity_spans(tags) == spans


def test_entity_f1_worked_examples() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert entity_f1(gold, gold) == 1.0
    assert entity_f1(gold, [["B-PER", "O", "O", "B-LOC"]]) == 0.5  # 1 of 2 found, 1 of 2 right
    assert entity_f1(gold, [["O", "O", "O", "O"]]) == 0.0
    assert entity_f1([["O"]], [["O"]]) == 0.0  # no entities at all, as seqeval
    # micro over sentences: 1 right of 1 found, of 3 expected: P 1, R 1/3, F1 0.5
    assert entity_f1([["B-PER"], ["B-LOC", "O", "B-ORG"]], [["B-PER"], ["O", "O", "O"]]) == 0.5
    # seqeval's README example: MISC found one word too early, PER right
    true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    predicted = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    assert entity_f1(true, predicted) == 0.5
    # 2 right of 3 found, of 2 expected: P 2/3, R 1, F1 0.8
    assert entity_f1([["B-PER", "O", "B-LOC"]], [["B-PER", "B-ORG", "B-LOC"]]) == pytest.approx(0.8)


BAD_FILES = {
    "missing.conll": (None, "does not exist"),
    "empty.conll": ("\n\n-DOCSTART- -X- O\n\n", "is empty"),
    "one_field.conll": ("Peter B-PER\nBlackburn\n", "line 2: one field ('Blackburn')"),
    "one_tag.conll": ("Peter O\nBlackburn O\n", "at least 2 distinct tags; found 1 ('O')"),
    "table.csv": ("tokens,tags\n", "a .csv file does not hold lists"),
    "table.txt": ("Peter B-PER\n", "unsupported file type"),
    "lengths.jsonl": ('{"tokens": ["a", "b"], "tags": ["O", "B-X"]}\n{"tokens": ["a"], "tags": ["O", "O"]}\n',
                      "row 2: 1 words but 2 tags"),
    "columns.jsonl": ('{"words": ["a"], "tags": ["O"]}\n', "has no column 'tokens'; its columns are 'words', 'tags'"),
    "string.jsonl": ('{"tokens": "a b", "tags": ["O", "B-X"]}\n', "row 1: 'tokens' is not a list"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_data_is_one_clear_error(tmp_path: Path, name: str) -> None:
    content, message = BAD_FILES[name]
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(DistillError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_tagged(tmp_path / name)


def test_cli_trains_then_evaluates_a_tagger(transformer_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    head_dir = tmp_path / "head"
    renamed = tmp_path / "train.jsonl"
    pd.read_json(data["jsonl"], lines=True).rename(columns={"tokens": "words", "tags": "ner"}).to_json(
        renamed, orient="records", lines=True)  # fmt: skip
    trained = CliRunner().invoke(main, ["head", "train", "--task", "tokens", "--model", str(transformer_dir),
                                        "--data", str(renamed), "--words-column", "words", "--tags-column", "ner",
                                        "--output", str(head_dir)])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    report = json.loads(trained.stdout)
    assert report["task"] == "tokens" and report["tags"] == 4 and report["valid_entity_f1"] > 0.9
    result = CliRunner().invoke(main, ["head", "eval", "--head", str(head_dir), "--data", str(data["test"])])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["entity_f1"] > 0.9 and scores["n"] == 40 and set(scores) == {"entity_f1", "accuracy", "n", "tokens"}


def test_cli_bad_tagged_data_is_one_line_and_exit_2(transformer_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.conll").write_text("Peter B-PER\nBlackburn\n")
    args = ["--model", str(transformer_dir), "--data", str(tmp_path / "bad.conll"), "--output", str(tmp_path / "h")]
    result = CliRunner().invoke(main, ["head", "train", "--task", "tokens", *args])
    assert result.exit_code == 2 and "one field" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_compare_scores_taggers_by_entity_f1_and_refuses_a_static_student(
    transformer_dir: Path, data: dict[str, Path], tmp_path: Path, tokenizer: BertTokenizerFast
) -> None:
    config = StaticConfig(dim=32, vocab_size=tokenizer.vocab_size, max_length=32, teacher="tiny", factored=False)
    static = StaticStudent(config, tokenizer.backend_tokenizer).save(tmp_path / "static")
    args = ["head", "compare", "--task", "tokens", "--data", str(data["conll"]), "--test", str(data["test"]),
            "--output", str(tmp_path / "compare")]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--models", f"{transformer_dir},{transformer_dir}/"])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "compare" / "compare.json").read_text())["rows"]
    assert [set(row["scores"]) for row in rows] == [{"entity_f1", "accuracy"}] * 2
    assert rows[0]["scores"] == rows[1]["scores"] and rows[0]["scores"]["entity_f1"] > 0.9  # one model, twice
    assert "| entity F1 | accuracy |" in result.output
    assert (transformer_dir / "student.json").is_file()  # a head is never saved over a model named by its path
    assert (tmp_path / "compare" / "heads" / str(transformer_dir).strip("/").replace("/", "_") / "head.json").is_file()
    refused = CliRunner().invoke(main, [*args, "--models", f"{transformer_dir},{static}"])
    assert refused.exit_code == 2 and "static student" in refused.output and "Traceback" not in refused.output
