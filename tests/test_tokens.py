"""How tokenizers of each kind spell their tokens: WordPiece, byte-level BPE, SentencePiece's metaspace."""

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from distill.errors import DistillError
from distill.teacher.tokens import Scheme, Speller, Spelling, byte_alphabet, check_fits, decode_bytes
from tests.conftest import SENTENCES
from tests.families import train_tokenizer

MIXED = "Café crème, naïve 東京 🙂 tab\there\n"


def _wordpiece() -> Tokenizer:
    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "the": 3, "##ing": 4, "[unused1]": 5, "play": 6, "madeupword0": 7}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens(["[UNK]", "[CLS]", "[SEP]"])
    return tok


def _byte_level() -> Tokenizer:
    merges = [("Ġ", "t"), ("Ġt", "h"), ("Ġth", "e"), ("i", "n"), ("in", "g"), ("Ã", "©")]
    specials = ["<s>", "</s>", "<pad>", "<mask>"]
    tokens = [*specials, *sorted(pre_tokenizers.ByteLevel.alphabet()), *("".join(m) for m in merges)]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    return tok


def _metaspace() -> Tokenizer:
    vocab = [("<unk>", 0.0), ("<s>", 0.0), ("▁the", -1.0), ("ing", -2.0), ("▁", -3.0), ("<unused3>", -9.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=0))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.add_special_tokens(["<unk>", "<s>"])
    return tok


def test_the_byte_alphabet_is_the_one_the_tokenizers_library_uses() -> None:
    assert set(byte_alphabet()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert sorted(byte_alphabet().values()) == list(range(256))
    pieces = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(MIXED)
    assert decode_bytes("".join(p for p, _ in pieces)) == MIXED


@pytest.mark.parametrize(
    ("build", "scheme", "expected"),
    [
        (_wordpiece, Scheme.WORDPIECE, {"[UNK]": None, "[CLS]": None, "[unused1]": None, "the": ("the", True),
                                        "##ing": ("ing", False), "madeupword0": ("madeupword0", True)}),
        (_byte_level, Scheme.BYTE_LEVEL, {"<s>": None, "</s>": None, "<pad>": None, "<mask>": None,
                                          "Ġthe": ("the", True), "ing": ("ing", False), "Ã©": ("é", False),
                                          "Ã": ("Ã", False), "Ġ": ("", True), "t": ("t", False)}),
        (_metaspace, Scheme.METASPACE, {"<unk>": None, "<s>": None, "<unused3>": None, "▁the": ("the", True),
                                        "ing": ("ing", False), "▁": ("", True)}),
    ],
)  # fmt: skip
def test_hand_checked_tokens_are_spelled_and_specials_are_none(build, scheme: Scheme, expected: dict) -> None:
    tok = build()
    assert Speller(tok).scheme is scheme
    spelled = Speller(tok).spellings()
    assert len(spelled) == tok.get_vocab_size()
    assert {t: spelled[tok.token_to_id(t)] for t in expected} == {t: e and Spelling(*e) for t, e in expected.items()}


def test_a_token_that_is_part_of_a_character_keeps_its_bytes() -> None:
    speller = Speller(_byte_level())
    assert speller.spell("æĿ") == Spelling("\xe6\x9d", False)  # two of the three bytes of '東', as latin-1
    assert speller.spell("æĿ") != speller.spell("æĽ")


def test_a_tokenizer_of_no_known_scheme_spells_tokens_as_they_are() -> None:
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    assert Speller(tok).scheme is Scheme.PLAIN
    assert Speller(tok).spellings() == [
        Spelling("[UNK]", True),
        Spelling("hello", True),
    ]  # [UNK] was never added as special


def test_schemes_are_found_inside_sequences() -> None:
    tok = _byte_level()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(), pre_tokenizers.ByteLevel(use_regex=False)])
    tok.decoder = None
    assert Speller(tok).scheme is Scheme.BYTE_LEVEL
    llama = _metaspace()  # Llama-2 style: no pre-tokenizer, a decoder that turns '▁' back into spaces
    llama.pre_tokenizer = None
    llama.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    assert Speller(llama).scheme is Scheme.METASPACE


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
@pytest.mark.parametrize("specials", ["bert", "roberta"])
def test_tokens_of_each_word_spell_the_word_back(kind: str, specials: str) -> None:
    """Each word's tokens join into the word, and only its first token starts a word."""
    fast = train_tokenizer(kind, specials, SENTENCES)
    tok = fast.backend_tokenizer
    speller = Speller(tok)
    spelled = speller.spellings()
    assert all(spelled[i] is None for i in fast.all_special_ids) and len(fast.all_special_ids) == 5
    text = "the cat sat on the mat and the dog barked at the mailman in the park"
    encoding = tok.encode(text, add_special_tokens=False)
    words = speller.words(text)
    pieces: dict[int, list[Spelling]] = {}
    for word, token in zip(encoding.word_ids, encoding.ids, strict=True):
        pieces.setdefault(word, []).append(spelled[token])
    assert len(pieces) == len(words) == len(text.split())
    for word, spelled_word in pieces.items():
        assert "".join(s.text for s in spelled_word) == words[word]
        # NOTE: byte-level BPE without a prefix space writes a text's first word as a continuation
        first = not (kind == "bpe" and word == 0)
        assert [s.word_start for s in spelled_word] == [first] + [False] * (len(spelled_word) - 1)


def test_words_are_what_the_pre_tokenizer_sees_in_plain_text() -> None:
    text = "The café, don't  stop!"
    assert Speller(train_tokenizer("wordpiece", "bert", SENTENCES).backend_tokenizer).words(text) == [
        "the", "cafe", ",", "don", "'", "t", "stop", "!"]  # fmt: skip
    assert Speller(_byte_level()).words(text) == ["The", "café", ",", "don", "'t", "stop", "!"]
    assert Speller(_metaspace()).words(text) == ["The", "café,", "don't", "stop!"]


@pytest.mark.parametrize("build", [_wordpiece, _byte_level, _metaspace])
def test_one_token_means_one_id_at_a_word_start(build) -> None:
    tok = build()
    expected = [True, False, False]  # 'the'; 'playing' or 'ing' as a word is two pieces; 'zzz' is unknown or pieces
    assert Speller(tok).one_token(["the", "playing" if build is _wordpiece else "ing", "zzz"]) == expected
    tok.enable_padding(length=16)  # as a teacher's tokenizer.json may leave it
    assert Speller(tok).one_token(["the", "playing" if build is _wordpiece else "ing", "zzz"]) == expected


def test_normalize_word_writes_a_word_as_the_tokenizer_reads_it() -> None:
    assert Speller(train_tokenizer("wordpiece", "bert", SENTENCES).backend_tokenizer).normalize_word("Café") == "cafe"
    assert Speller(_byte_level()).normalize_word(" Café ") == "Café"


def test_ids_past_the_embedding_table_are_a_clear_error() -> None:
    check_fits(_wordpiece(), 8, "tiny")
    with pytest.raises(DistillError, match="ids up to 7 but its embedding table has 6 rows"):
        check_fits(_wordpiece(), 6, "tiny")
