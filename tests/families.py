"""Tiny teachers of every supported family, built in memory: a config and a tokenizer trained in the test.

No download: each tokenizer is trained with the `tokenizers` library on the test sentences, in the
kind its family really uses (WordPiece for BERT / DistilBERT / ELECTRA / MPNet, byte-level BPE for
RoBERTa / ModernBERT, Unigram with SentencePiece's metaspace for XLM-RoBERTa), with the family's own
special tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import CONFIG_MAPPING, AutoModel, PreTrainedTokenizerFast

from distill.teacher.model import Pooling, Teacher, pooling_config

BERT_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                 "mask_token": "[MASK]"}  # fmt: skip
ROBERTA_SPECIALS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                    "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}  # fmt: skip


@dataclass(frozen=True)
class Family:
    model_type: str
    tokenizer: str  # "wordpiece", "bpe" (byte-level) or "unigram" (metaspace)
    specials: str  # "bert" ([CLS] ... [SEP]) or "roberta" (<s> ... </s>)


FAMILIES = {
    "bert": Family("bert", "wordpiece", "bert"),
    "roberta": Family("roberta", "bpe", "roberta"),
    "xlm-roberta": Family("xlm-roberta", "unigram", "roberta"),
    "mpnet": Family("mpnet", "wordpiece", "roberta"),
    "distilbert": Family("distilbert", "wordpiece", "bert"),
    "electra": Family("electra", "wordpiece", "bert"),
    "modernbert": Family("modernbert", "bpe", "bert"),
}


def train_tokenizer(kind: str, specials: str, texts: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A small fast tokenizer of `kind` trained on `texts`, with BERT's or RoBERTa's special tokens."""
    names = BERT_SPECIALS if specials == "bert" else ROBERTA_SPECIALS
    order = list(dict.fromkeys(names.values()))  # <s>, <pad>, </s>, <unk>, <mask>: RoBERTa's ids 0-4
    unk = names["unk_token"]
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=unk))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=order)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=order,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=order, unk_token=unk)
    else:
        raise ValueError(kind)
    tok.train_from_iterator(texts, trainer)
    cls, sep = names["cls_token"], names["sep_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} {sep} $B {sep}",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=64, **names)


def tiny_config(family: Family, tokenizer: PreTrainedTokenizerFast, layers: int = 3):
    """A 32-wide config of the family's own class, sized to the tokenizer."""
    sizes = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if family.model_type == "distilbert":
        return CONFIG_MAPPING["distilbert"](**sizes, dim=32, n_layers=layers, n_heads=2, hidden_dim=64,
                                            max_position_embeddings=128)  # fmt: skip
    widths = {"hidden_size": 32, "num_hidden_layers": layers, "num_attention_heads": 2, "intermediate_size": 64}
    if family.model_type == "modernbert":
        # NOTE: a window of 4 tokens and every 2nd layer global, so a wrong global/local pattern changes vectors.
        return CONFIG_MAPPING["modernbert"](**sizes, **widths, max_position_embeddings=128, local_attention=4,
                                            global_attn_every_n_layers=2, cls_token_id=tokenizer.cls_token_id,
                                            sep_token_id=tokenizer.sep_token_id)  # fmt: skip
    extra = {"embedding_size": 16} if family.model_type == "electra" else {}
    if family.specials == "roberta":
        extra |= {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    positions = 130 if family.model_type in ("roberta", "xlm-roberta", "mpnet") else 128  # + padding offset
    return CONFIG_MAPPING[family.model_type](**sizes, **widths, **extra, max_position_embeddings=positions)


def tiny_teacher(name: str, texts: list[str], *, pooling: Pooling = Pooling.MEAN, seed: int = 0) -> Teacher:
    """A 3-layer, 32-wide teacher of family `name` with random weights and a tokenizer trained on `texts`."""
    family = FAMILIES[name]
    tokenizer = train_tokenizer(family.tokenizer, family.specials, texts)
    torch.manual_seed(seed)
    model = AutoModel.from_config(tiny_config(family, tokenizer))
    return Teacher(model, tokenizer, pooling=pooling, normalize=True, max_length=64, name=f"tiny-{name}")


def save_teacher(teacher: Teacher, path: Path, *, modules: list[dict] | None = None) -> Path:
    """Write a teacher as a sentence-transformers folder (Transformer, Pooling, Normalize) that `Teacher.load` reads."""
    import json

    teacher.model.save_pretrained(path)
    teacher.tokenizer.save_pretrained(path)
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": teacher.max_length}))
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config(teacher.pooling, teacher.token_dim)))
    default = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (path / "modules.json").write_text(json.dumps(modules or default))
    return path
