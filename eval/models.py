"""Everything the eval suite compares, seen through one small interface.

A `Candidate` is a name, a role, its size, and one `(texts, batch_size) -> vectors` function
per backend (torch, onnx_fp32, onnx_int8). The evaluators only ever call `encode`, so they
cannot tell a student from the teacher or from the peer baseline. `task_encoders` gives the
task evaluators each backend as a `TaskEncoder`: with the teacher's own query and document
prompts where its files name them, and an identity (a hash of the files its vectors depend on)
that keys the cache of corpus vectors.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import students
from distill.cards import CARD_FILE
from distill.data.basis import teacher_basis
from distill.data.corpus import Split
from distill.data.targets import Targets
from distill.errors import DistillError
from distill.export.exporter import EXPORT_DIR, EXPORT_FORMAT, PARITY_FILE, export_student
from distill.io import atomic_dir, read_json
from distill.runtime import MODEL_FILES, OnnxEmbedder
from distill.runtime.embedder import CONFIG_FILE, TOKENIZER_FILE
from distill.runtime.vectors import BASIS_FILE
from distill.teacher.model import Teacher, read_teacher_files
from distill.training.pipeline import folder_bytes
from eval.encoders import TaskEncoder, files_fingerprint, fingerprint
from eval.latency import BatchEncode
from students.transformer import TransformerStudent

logger = logging.getLogger(__name__)

TEACHER_EXPORT = Path("baseline") / "teacher-onnx"  # in a run folder: the teacher's own ONNX export, made by eval

TEACHER_FILES = ("model.safetensors", "pytorch_model.bin")
ROLES = {"query": ("query",), "document": ("document", "passage", "corpus")}  # a teacher's prompt names for each role


@dataclass
class Candidate:
    name: str
    role: str  # "teacher", "student" or "baseline"
    params: int
    bytes: int | None  # the saved model on disk
    backends: dict[str, BatchEncode]  # the reference first ("torch"), then "onnx_fp32" / "onnx_int8" once exported
    token_fidelity: Callable[[], float] | None = None  # for students that give token vectors
    same_space: bool = True  # whether its vectors live in the teacher's space (cosine to it is meaningful)
    details: dict[str, Any] = field(default_factory=dict)
    # per backend: the encode of each role ("query", "document") with the model's own prompt for it, where it has one
    prompted: dict[str, dict[str, BatchEncode]] = field(default_factory=dict)
    # per backend: a hash of everything its document vectors depend on (weights, max length, prompt): the cache key
    identities: dict[str, Callable[[], str]] = field(default_factory=dict)

    def encode(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """(n, dim) float32 vectors from the reference backend (the one evaluated for quality)."""
        return np.asarray(next(iter(self.backends.values()))(texts, batch_size), dtype=np.float32)

    def column(self, backend: str) -> str:
        """The backend's name in task tables: the model's name for its reference backend, else "name:backend"."""
        return self.name if backend == next(iter(self.backends)) else f"{self.name}:{backend}"


def task_encoders(candidate: Candidate, batch_size: int = 128) -> list[TaskEncoder]:
    """Each backend of a candidate as the task evaluators see it, the reference backend first."""

    def texts_only(encode: BatchEncode | None) -> Callable[[Sequence[str]], np.ndarray] | None:
        return None if encode is None else lambda texts: np.asarray(encode(texts, batch_size), dtype=np.float32)

    out = []
    for backend, encode in candidate.backends.items():
        roles = candidate.prompted.get(backend, {})
        out.append(TaskEncoder(
            name=candidate.column(backend), encode=texts_only(encode), query=texts_only(roles.get("query")),
            document=texts_only(roles.get("document")), identity=candidate.identities.get(backend),
            same_space=candidate.same_space,
        ))  # fmt: skip
    return out


def role_prompts(teacher: Teacher) -> dict[str, str]:
    """The teacher's own prompts for queries and documents (e5's "query: ", "passage: ") where its files name them."""
    prompts = read_teacher_files(teacher.path).prompts if teacher.path else {}
    out = {}
    for role, names in ROLES.items():
        name = next((n for n in names if n in prompts), None)
        if name is not None:
            out[role] = prompts[name]
    return out


def teacher_with_prompt(teacher: Teacher, prompt: str) -> BatchEncode:
    """The teacher's encode with `prompt` in place of the run's prompt."""

    def encode(texts: Sequence[str], batch_size: int) -> np.ndarray:
        with teacher.with_prompt(prompt):
            return teacher.sentence_vectors(texts, batch_size)

    return encode


def embedder_with_prompt(embedder: OnnxEmbedder, prompt: str) -> BatchEncode:
    """An export's encode with `prompt` in place of the one it was distilled with (the same session, shared)."""
    clone = copy.copy(embedder)
    clone.config = dataclasses.replace(embedder.config, prompt=prompt)
    return clone.encode


def _identity(*parts: str | Callable[[], str]) -> Callable[[], str]:
    """A cache identity computed once, when first asked for (hashing weights takes a moment)."""
    return functools.cache(lambda: fingerprint(p if isinstance(p, str) else p() for p in parts))


def _folder_files(folder: Path) -> Callable[[], str]:
    return lambda: files_fingerprint(f for f in Path(folder).rglob("*") if f.is_file())


def teacher_candidate(teacher: Teacher) -> Candidate:
    folder = read_teacher_files(teacher.path).transformer if teacher.path else None  # may be a subfolder
    weights = [folder / f for f in TEACHER_FILES] if folder else []
    prompts = role_prompts(teacher)
    document = prompts.get("document", teacher.prompt)
    return Candidate(
        name="teacher", role="teacher", params=sum(p.numel() for p in teacher.model.parameters()),
        bytes=next((f.stat().st_size for f in weights if f.is_file()), None),
        backends={"torch": lambda texts, batch_size: teacher.sentence_vectors(texts, batch_size)},
        details={"model": teacher.name, **({"prompts": prompts} if prompts else {})},
        prompted={"torch": {role: teacher_with_prompt(teacher, p) for role, p in prompts.items()}},
        identities={"torch": _identity("teacher", lambda: teacher.fingerprint, "document prompt", document)},
    )  # fmt: skip


def add_teacher_onnx(
    candidate: Candidate, teacher: Teacher, targets: Targets, cache: Path, threads: int | None
) -> None:
    """Give the teacher ONNX fp32 / int8 backends, exported exactly as the students are (made once, then cached).

    The teacher is exported as a transformer student with all its layers copied, which reproduces
    it (to 1e-5 in the tests; the export's parity check holds it to 1e-4 again). Without this an
    ONNX student would only be compared with a torch teacher, which flatters the student.
    """
    if not export_teacher(teacher, targets, cache):
        return
    prompts = candidate.details.get("prompts", {})  # NOTE: the teacher's role prompts, read by teacher_candidate
    for backend, embedder in add_onnx_backends(candidate, cache, threads).items():
        candidate.prompted[backend] = {role: embedder_with_prompt(embedder, p) for role, p in prompts.items()}
        candidate.identities[backend] = _identity(candidate.identities[backend], "document prompt",
                                                  prompts.get("document", embedder.config.prompt))  # fmt: skip


def export_teacher(teacher: Teacher, targets: Targets, cache: Path) -> bool:
    """Export the teacher to `cache` as a transformer student with all its layers, unless a current export is there;
    whether an export is there now (a teacher that cannot be copied so gets a warning)."""
    if not export_is_stale(cache):
        return True
    try:
        every_layer = list(range(teacher.model.config.num_hidden_layers))
        whole = TransformerStudent.from_teacher(teacher, targets, layers=every_layer)
    except (DistillError, AttributeError, KeyError) as e:
        logger.warning("the teacher cannot be copied into a transformer student (%s): no ONNX teacher to compare "
                       "with", e)  # fmt: skip
        return False
    texts, vectors = targets.texts_and_vectors(Split.TEST, 256)
    logger.info("exporting the teacher to ONNX once, for the comparison (cached in %s)", cache)
    export_student(whole, cache, name="teacher", texts=texts, teacher_vectors=vectors, basis=teacher_basis(targets))
    return True


def student_candidates(summary: dict[str, Any], run_dir: Path, targets: Targets | None,
                       token_fidelity: Callable[[Any], float] | None, threads: int | None,
                       device: torch.device | None = None, onnx: bool = True) -> list[Candidate]:  # fmt: skip
    """Every student of a run (torch on `device`) with its ONNX exports, made first where missing or stale (with
    `onnx`; without, torch alone: `targets` and `token_fidelity` are then not needed)."""
    out = []
    basis = functools.cache(lambda: teacher_basis(targets))  # NOTE: fitted once, and only if an export is made
    for entry in summary["students"]:
        student = students.load(entry["path"])
        export = run_dir / EXPORT_DIR / entry["name"]
        if onnx and targets is not None and export_is_stale(export, Path(entry["path"])):
            logger.info("exporting %s to ONNX (its export is missing or older than the student)", entry["name"])
            texts, vectors = targets.texts_and_vectors(Split.TEST, 512)
            export_student(student, export, name=entry["name"], texts=texts, teacher_vectors=vectors, basis=basis())
        student = student.to(device or "cpu")
        gives_tokens = hasattr(student, "forward_tokens")
        candidate = Candidate(
            name=entry["name"], role="student", params=student.num_parameters(),
            bytes=folder_bytes(Path(entry["path"])), backends={"torch": student.encode},
            token_fidelity=(lambda s=student: token_fidelity(s)) if gives_tokens and token_fidelity else None,
            details={"kind": student.kind, "path": entry["path"]},
            identities={"torch": _identity("student", _folder_files(Path(entry["path"])))},
        )  # fmt: skip
        if onnx:
            add_onnx_backends(candidate, export, threads)
        out.append(candidate)
    return out


def export_is_stale(export: Path, student: Path | None = None) -> bool:
    """Whether `export` has to be (re)made: missing, of an older export format, without the teacher's basis (made
    before shorter vectors), or older than the student's files.

    NOTE: the student's model card is not one of them: `distill eval` and `distill run --tasks` write it again
    after the export (with the figures), and it changes nothing the export holds.
    """
    parity = export / PARITY_FILE
    if not parity.is_file() or not (export / BASIS_FILE).is_file():
        return True
    if read_json(parity).get("format", 1) < EXPORT_FORMAT:
        return True
    if student is None:
        return False
    files = (f for f in student.rglob("*") if f.is_file() and f != student / CARD_FILE)
    return max((f.stat().st_mtime for f in files), default=0.0) > parity.stat().st_mtime


def add_onnx_backends(candidate: Candidate, export: Path, threads: int | None) -> dict[str, OnnxEmbedder]:
    """The export's fp32 and int8 graphs as `onnx_fp32` / `onnx_int8` backends, with their sizes and parity figures;
    returns the embedders by backend."""
    embedders = {}
    for precision, file in MODEL_FILES.items():
        backend = f"onnx_{precision}"
        embedders[backend] = OnnxEmbedder(export, precision=precision, threads=threads)
        candidate.backends[backend] = embedders[backend].encode
        candidate.details[f"{backend}_bytes"] = (export / file).stat().st_size
        files = [export / file, export / CONFIG_FILE, export / TOKENIZER_FILE]
        candidate.identities[backend] = _identity("export", lambda files=files: files_fingerprint(files))
    candidate.details["export"] = read_json(export / PARITY_FILE)
    return embedders


M2V_PEERS = "int8,128/int8"  # `--model2vec-peers`: model2vec's quantised variants, each beside its default
M2V_DTYPES = ("float32", "float16", "int8")  # model2vec's table dtypes (`quantize_to`)


@dataclass(frozen=True)
class Model2VecVariant:
    """How model2vec distils the teacher (`distill_from_model`): PCA to `pca_dims`, a table of `quantize_to`, and
    with `vocabulary_quantization` the vocabulary's rows k-means-clustered to that many. `spec`: what named it
    ("128/int8"; "" for model2vec's own defaults, which `distill_from_model` is then called with)."""

    pca_dims: int | None = 256
    quantize_to: str = "float16"
    vocabulary_quantization: int | None = None
    spec: str = ""

    @property
    def name(self) -> str:
        """ "model2vec", "model2vec-128-int8": its column in the tables and its folder under RUN/baseline/."""
        return "model2vec" + (f"-{self.spec.replace('/', '-')}" if self.spec else "")

    def settings(self) -> dict[str, Any]:
        """`distill_from_model`'s keyword arguments: none for the defaults (as a user would run it)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "spec"} if self.spec else {}

    @classmethod
    def parse(cls, spec: str) -> Model2VecVariant:
        """ "int8", "128/int8", "vocab4096", "128/int8/vocab4096": PCA dims, table dtype, vocabulary clusters."""
        fields: dict[str, Any] = {}
        for part in spec.split("/"):
            if part.isdigit() and int(part) > 0 and "pca_dims" not in fields:
                fields["pca_dims"] = int(part)
            elif part in M2V_DTYPES and "quantize_to" not in fields:
                fields["quantize_to"] = part
            elif part.startswith("vocab") and part[5:].isdigit() and int(part[5:]) > 1:
                fields["vocabulary_quantization"] = int(part[5:])
            else:
                raise DistillError(f"bad model2vec peer {spec!r}: give DIMS, a dtype ({', '.join(M2V_DTYPES)}) and/or "
                                   "vocabN, joined by '/', e.g. 128/int8 or vocab4096; or none")  # fmt: skip
        return cls(**fields, spec=spec)


def model2vec_peers(spec: str) -> list[Model2VecVariant]:
    """The variants a comma-separated `spec` names ("none" or "": none), each once."""
    pieces = [p.strip() for p in spec.split(",") if p.strip() not in ("", "none")]
    return list(dict.fromkeys(Model2VecVariant.parse(p) for p in pieces))


def model2vec_candidate(teacher: Teacher, cache: Path, variant: Model2VecVariant | None = None) -> Candidate | None:
    """The peer baseline: model2vec's distillation of the same teacher (made once, then cached), if installed;
    `variant`: its settings [default: model2vec's own].

    NOTE: with model2vec's default settings, as a user would run it: PCA to 256 dimensions,
    SIF weighting, a float16 table. After PCA its vectors live in a space of their own, so only
    the metrics that compare each space with itself apply (neighbours, pairwise similarities,
    tasks). A trial without PCA (the teacher's axes kept) gave a mean cosine of 0.35 to the
    teacher and 3.5 points less STS, so the default is the fairer opponent. Its quantised variants
    (`Model2VecVariant`) are the peers of the compressed students.
    """
    variant = variant or Model2VecVariant()
    try:
        from model2vec import StaticModel
        from model2vec.distill import distill_from_model
    except ImportError:
        logger.warning("model2vec is not installed (pip install 'model2vec[distill]'): no peer baseline")
        return None
    if not (cache / "model.safetensors").is_file():
        logger.info("distilling the %s baseline from the teacher (once; cached in %s)", variant.name, cache)
        try:
            model = distill_from_model(model=teacher.model, tokenizer=teacher.tokenizer, **variant.settings())
        except (ValueError, RuntimeError) as e:
            raise DistillError(f"model2vec could not distill {teacher.name!r}: {e}") from e
        with atomic_dir(cache) as tmp:
            model.save_pretrained(str(tmp))
    model = StaticModel.from_pretrained(str(cache))
    settings = ", ".join(f"{k}={v!r}" for k, v in variant.settings().items())
    return Candidate(
        name=variant.name, role="baseline", params=int(np.prod(model.embedding.shape)), bytes=folder_bytes(cache),
        backends={"numpy": lambda texts, batch_size: model.encode(list(texts), batch_size=batch_size)
                  .astype(np.float32)},
        same_space=False,
        details={"settings": f"model2vec distill_from_model({settings})" if settings
                 else "model2vec distill_from_model with its default settings (PCA to 256)"},
        identities={"numpy": _identity("model2vec", _folder_files(cache))},
    )  # fmt: skip
