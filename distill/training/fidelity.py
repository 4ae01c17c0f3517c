"""Fidelity: the mean cosine between a student's vectors and the teacher's, for sentences and for tokens."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from distill.data.targets import Targets
from students.base import Student, pad


def fidelity(student: Student, ids: list[list[int]], targets: np.ndarray, batch_size: int = 512) -> float:
    """Mean cosine between the student's and the teacher's sentence vectors."""
    total, count = fidelity_sum(student, ids, targets, batch_size)
    return total / max(count, 1)


def fidelity_sum(
    student: Student, ids: list[list[int]], targets: np.ndarray, batch_size: int = 512
) -> tuple[float, int]:
    """(sum of cosines, texts) between the student's and the teacher's sentence vectors: shares add up over ranks."""
    was_training = student.training
    student.eval()
    total = 0.0
    with torch.inference_mode():
        for first in range(0, len(ids), batch_size):
            batch = pad(ids[first : first + batch_size])
            out = student(batch["input_ids"].to(student.device), batch["attention_mask"].to(student.device))
            teacher = torch.from_numpy(np.asarray(targets[first : first + batch_size], dtype=np.float32))
            total += F.cosine_similarity(out.float().cpu(), teacher, dim=-1).sum().item()
    student.train(was_training)
    return total, len(ids)


def token_fidelity(student: Student, targets: Targets, index: np.ndarray, batch_size: int = 64) -> float | None:
    """Mean cosine between the student's and the teacher's token vectors in context (every token counted once).

    The student reads the teacher's own token ids, so this is for students that share its tokenizer;
    None when the targets hold no token vectors.
    """
    if targets.token_vectors is None:
        return None
    was_training = student.training
    student.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for first in range(0, len(index), batch_size):
            rows = [targets.tokens_of(int(i)) for i in index[first : first + batch_size]]
            batch = pad([ids.tolist() for ids, _ in rows])
            tokens = student.forward_tokens(batch["input_ids"].to(student.device),
                                            batch["attention_mask"].to(student.device)).float().cpu()  # fmt: skip
            for row, (_, vectors) in enumerate(rows):
                teacher = torch.from_numpy(np.asarray(vectors, dtype=np.float32))
                total += F.cosine_similarity(tokens[row, : len(teacher)], teacher, dim=-1).sum().item()
                count += len(teacher)
    student.train(was_training)
    return total / max(count, 1)
