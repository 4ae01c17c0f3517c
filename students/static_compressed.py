"""The compressed static student: a static student whose table is stored compressed and decoded a row at a time.

A text's vector is the static student's: the L2-normalised mean of its tokens' rows. Only the rows are kept
in fewer bytes, and `forward` decodes just the rows it gathers, so the full float table is never built:

    int8   each row as int8 codes with one scale a row: row = scale * codes            (vocab, dim) int8
    int4   each row as 4-bit codes in -7..7, two a byte, one scale a row              (vocab, dim / 2) uint8
    pq     product quantisation: a row cut into `parts` pieces of dim / parts values, each piece the nearest
           of its part's 256 centroids (k-means over the vocabulary, optionally weighted by how often each token
           occurs); a uint8 code a piece, the codebooks in fp16                         (vocab, parts) uint8

With the codes fixed, the scales (int8 / int4) and codebooks (pq) are ordinary parameters, so the trainer can
tune them on the teacher's sentence vectors to win back some of what compression lost (`distill compress
--tune-epochs`). Saved folder (`save` / `load`):

    student.json          kind "static-compressed", the static config plus scheme, parts, scale_dtype
    model.safetensors     codes as stored, and scales (float32 or float16) or codebooks (float16)
    tokenizer.json.xz     the student's tokenizer, xz-compressed

NOTE: sentence-transformers and model2vec cannot load these folders: both read a plain float table, and writing
one would put the uncompressed bytes back. The tokenizer is xz-compressed for the same reason (0.71 MB of
bert-base-uncased's tokenizer.json become 0.15 MB, a large share of a 2 MB student). `students.load` reads the
folder, and `distill export` writes ONNX graphs that decode the stored codes (`distill.export.static_graph`).
Make one with `from_static` from a trained static student, or with `distill compress --run RUN`.
"""

from __future__ import annotations

import dataclasses
import lzma
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn

from distill.errors import DistillError
from students.base import TOKENIZER_FILE, WEIGHTS_FILE, Student
from students.static import StaticConfig, StaticStudent, masked_mean

if TYPE_CHECKING:
    from distill.data.targets import Targets
    from distill.teacher.model import Teacher

SCHEMES = ("int8", "int4", "pq")
SCALE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
CENTROIDS = 256  # a part's centroids: what one uint8 code can name
PACKED_TOKENIZER = TOKENIZER_FILE + ".xz"
FROM_STATIC = "a static-compressed student is made from a trained static one: `distill compress --run RUN`"


@dataclass
class CompressedStaticConfig(StaticConfig):
    factored: bool = False  # the codes are fixed: there is no free table to factor
    scheme: str = "pq"  # int8, int4 or pq
    parts: int = 48  # pq: pieces a row (dim must divide by it)
    scale_dtype: str = "float32"  # int8 / int4: how each row's scale is stored, float32 or float16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scheme not in SCHEMES:
            raise DistillError(f"scheme must be one of {', '.join(SCHEMES)}, not {self.scheme!r}")
        if self.scheme == "pq" and not (0 < self.parts <= self.dim and self.dim % self.parts == 0):
            raise DistillError(f"parts must divide the dimension {self.dim} (pq: a row in equal pieces), "
                               f"not {self.parts}")  # fmt: skip
        if self.scheme == "int4" and self.dim % 2:
            raise DistillError(f"int4 packs two values a byte: the dimension ({self.dim}) must be even")
        if self.scale_dtype not in SCALE_DTYPES:
            raise DistillError(f"scale_dtype must be float32 or float16, not {self.scale_dtype!r}")
        self.factored = False


class CompressedStaticStudent(StaticStudent):
    """A static student storing its table as int8, int4 or product-quantised codes (see the module's docstring)."""

    kind = "static-compressed"
    config_class = CompressedStaticConfig
    # tuning the scales or codebooks with the codes fixed (`distill compress --tune-epochs`)
    default_training: ClassVar[dict[str, Any]] = {"lr": 1e-3, "epochs": 3, "batch_size": 256, "patience": 2}

    def __init__(self, config: CompressedStaticConfig, tokenizer: Tokenizer) -> None:
        # NOTE: Student's constructor, not StaticStudent's: that one makes the (vocab, dim) float table
        Student.__init__(self, config, tokenizer)
        self.factors = None
        vocab, dim = config.vocab_size, config.dim
        if config.scheme == "pq":
            self.register_buffer("codes", torch.zeros(vocab, config.parts, dtype=torch.uint8))  # (vocab, parts)
            self.codebooks = nn.Parameter(torch.zeros(config.parts, CENTROIDS, dim // config.parts))
        else:
            width, dtype = (dim, torch.int8) if config.scheme == "int8" else (dim // 2, torch.uint8)
            self.register_buffer("codes", torch.zeros(vocab, width, dtype=dtype))  # (vocab, width)
            self.scales = nn.Parameter(torch.ones(vocab))  # (vocab,)

    @classmethod
    def check_teacher(cls, teacher: Teacher, **options: Any) -> None:
        raise DistillError(FROM_STATIC)

    @classmethod
    def from_teacher(cls, teacher: Teacher, targets: Targets, **options: Any) -> StaticStudent:
        raise DistillError(FROM_STATIC)

    @classmethod
    def from_static(
        cls, student: StaticStudent, scheme: str, parts: int = 48, weights: np.ndarray | None = None, *,
        scale_dtype: str = "float32", seed: int = 0,
    ) -> CompressedStaticStudent:  # fmt: skip
        """`student`'s table compressed by `scheme`; `weights` (vocab,): how much each row counts in pq's k-means
        (e.g. how often each token occurs; None: all alike)."""
        if isinstance(student, CompressedStaticStudent):
            raise DistillError("this student is compressed already; compress the static student it came from")
        kept = {f.name: getattr(student.config, f.name) for f in dataclasses.fields(StaticConfig)}
        config = CompressedStaticConfig(**kept, scheme=scheme, parts=parts, scale_dtype=scale_dtype)
        compressed = cls(config, student.tokenizer)
        table = student.table().float().cpu().numpy()  # (vocab, dim)
        with torch.no_grad():
            if scheme == "pq":
                codes, codebooks = product_quantize(table, parts, weights, seed)
                compressed.codes.copy_(torch.from_numpy(codes))
                compressed.codebooks.copy_(torch.from_numpy(codebooks))
            else:
                codes, scales = quantize_rows(table, 8 if scheme == "int8" else 4, SCALE_DTYPES[scale_dtype])
                compressed.codes.copy_(torch.from_numpy(codes if scheme == "int8" else pack_int4(codes)))
                compressed.scales.copy_(torch.from_numpy(scales))
        compressed.round_to_stored()
        return compressed.eval()

    def rows(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(...,) token ids -> (..., dim) their decoded rows."""
        codes = self.codes[input_ids]
        if self.config.scheme == "pq":
            part = torch.arange(self.config.parts, device=codes.device)
            return self.codebooks[part, codes.long()].flatten(-2)  # (..., parts, dim / parts) -> (..., dim)
        values = codes.float() if self.config.scheme == "int8" else unpack_int4(codes)
        return values * self.scales[input_ids].unsqueeze(-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(masked_mean(self.rows(input_ids), attention_mask), dim=-1)

    def table(self) -> torch.Tensor:
        """(vocab, dim): every row decoded (what the compressed table stands for)."""
        with torch.no_grad():
            return self.rows(torch.arange(self.config.vocab_size, device=self.codes.device)).contiguous()

    def num_parameters(self) -> int:
        """The numbers stored: codes and scales or codebooks."""
        return self.codes.numel() + sum(p.numel() for p in self.parameters())

    def round_to_stored(self) -> None:
        """Round the scales or codebooks to the precision they are saved in, so a saved student loads unchanged."""
        with torch.no_grad():
            for name, value in self.stored_parameters().items():
                getattr(self, name).copy_(value.float())

    def stored_parameters(self) -> dict[str, torch.Tensor]:
        if self.config.scheme == "pq":
            return {"codebooks": self.codebooks.detach().half()}
        return {"scales": self.scales.detach().to(SCALE_DTYPES[self.config.scale_dtype])}

    def finalize(self) -> None:
        self.round_to_stored()

    def state_to_save(self) -> dict[str, torch.Tensor]:
        return {"codes": self.codes.contiguous(), **{k: v.contiguous() for k, v in self.stored_parameters().items()}}

    def save_extra(self, path: Path) -> None:
        """The tokenizer xz-compressed in place of `tokenizer.json` (see the module's NOTE); no loaders' layout."""
        plain = path / TOKENIZER_FILE
        (path / PACKED_TOKENIZER).write_bytes(lzma.compress(plain.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
        os.remove(plain)

    @classmethod
    def load(cls, path: str | Path) -> CompressedStaticStudent:
        path = Path(path)
        config = cls.read_config(path)
        tokenizer = Tokenizer.from_str(lzma.decompress((path / PACKED_TOKENIZER).read_bytes()).decode("utf-8"))
        student = cls(config, tokenizer)
        state = load_file(str(path / WEIGHTS_FILE))
        student.load_weights({k: v if k == "codes" else v.float() for k, v in state.items()})
        return student.eval()


def quantize_rows(table: np.ndarray, bits: int, scale_dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric `bits`-bit codes (vocab, dim) int8 and one scale a row (vocab,) float32, rounded to `scale_dtype`
    first so the codes are those of the stored scale; an all-zero row keeps scale 1 and zero codes."""
    top = 2 ** (bits - 1) - 1
    scales = np.abs(table).max(axis=1) / top
    scales = torch.from_numpy(scales.astype(np.float32)).to(scale_dtype).float().numpy()
    scales = np.where(scales > 0, scales, 1.0).astype(np.float32)
    codes = np.clip(np.rint(table / scales[:, None]), -top, top).astype(np.int8)
    return codes, scales


def pack_int4(codes: np.ndarray) -> np.ndarray:
    """(vocab, dim) codes in -7..7 -> (vocab, dim / 2) uint8: code + 8, the even column in the low four bits."""
    shifted = (codes.astype(np.int16) + 8).astype(np.uint8)
    return (shifted[:, 0::2] | (shifted[:, 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """(..., dim / 2) uint8 -> (..., dim) float codes in -7..7 (the inverse of `pack_int4`)."""
    wide = packed.to(torch.int16)
    low, high = wide % 16, wide // 16
    return torch.stack([low, high], dim=-1).flatten(-2).float() - 8.0  # (..., dim / 2, 2) -> (..., dim)


def product_quantize(
    table: np.ndarray, parts: int, weights: np.ndarray | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(codes (vocab, parts) uint8, codebooks (parts, 256, dim / parts) float32 holding fp16 values): each part's
    centroids by k-means over its pieces of every row (weighted by `weights` when given), each piece's code its
    nearest centroid after the centroids are rounded to fp16."""
    from sklearn.cluster import KMeans

    vocab, dim = table.shape
    pieces = table.reshape(vocab, parts, dim // parts)
    codes = np.empty((vocab, parts), dtype=np.uint8)
    codebooks = np.empty((parts, CENTROIDS, dim // parts), dtype=np.float32)
    for part in range(parts):
        fit = KMeans(CENTROIDS, random_state=seed, n_init=1, max_iter=50).fit(pieces[:, part], sample_weight=weights)
        centroids = fit.cluster_centers_.astype(np.float16).astype(np.float32)  # (256, dim / parts)
        codebooks[part] = centroids
        codes[:, part] = nearest(pieces[:, part], centroids)
    return codes, codebooks


def nearest(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(n,) index of the centroid nearest each of `points` (n, d)."""
    distances = (points**2).sum(axis=1, keepdims=True) - 2 * points @ centroids.T + (centroids**2).sum(axis=1)
    return distances.argmin(axis=1)
