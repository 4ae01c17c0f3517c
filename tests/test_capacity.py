"""The static student's ceiling: the teacher's token vectors averaged over their contexts, attention taken out."""

import numpy as np

from distill.teacher.model import Teacher
from eval.experiments.capacity import bag_ceiling
from tests.conftest import SENTENCES


def test_the_bag_ceiling_is_the_teacher_where_every_token_has_one_context(tiny_teacher: Teacher) -> None:
    text = SENTENCES[:1]
    ceiling = bag_ceiling(tiny_teacher, text)
    np.testing.assert_allclose(ceiling.encode(text), tiny_teacher.sentence_vectors(text), atol=1e-5)


def test_the_bag_ceiling_loses_what_context_changes(tiny_teacher: Teacher) -> None:
    ceiling = bag_ceiling(tiny_teacher, SENTENCES)  # [CLS], [SEP], "the" and "." now have many contexts each
    cosines = np.sum(ceiling.encode(SENTENCES) * tiny_teacher.sentence_vectors(SENTENCES), axis=1)
    assert 0.5 < cosines.mean() < 0.999
