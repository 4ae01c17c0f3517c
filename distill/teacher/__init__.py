"""The teacher side: a Hugging Face encoder and everything its sentence-transformers files say.

    model.py       `Teacher`: load by folder or hub name (`Teacher.load`), place on a device, and give
                   sentence vectors, token vectors in context and one vector per vocabulary token
    st_modules.py  the sentence-transformers modules it reproduces (Pooling, Dense, Normalize, prompts,
                   max length) or refuses in one line
    tokens.py      each vocabulary token's spelling as its tokenizer means it (`##ing`, `Ġthe`, `▁the`)

Everything below reads from here: the targets (`distill.data`), the students built from the teacher's
own layers (`students/`), the eval suite.
"""

from distill.teacher.model import DEFAULT_TEACHER, Teacher, resolve_teacher

__all__ = ["DEFAULT_TEACHER", "Teacher", "resolve_teacher"]
