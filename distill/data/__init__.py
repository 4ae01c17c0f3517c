"""What students learn from: the text, and the teacher's targets for it.

    corpus.py     corpora (the packaged default, .txt / .jsonl / .csv / .parquet files, folders, Hugging
                  Face datasets) read as a stream, cleaned, and split by a hash of each text
    textstore.py  the cleaned corpus on disk, read back by index (never one Python list)
    augment.py    new text forms made from the training texts (spans, bare words, vocabulary bags...)
    domains.py    held-out text of other forms (reviews, titles, forum posts, chat), never trained on
    targets.py    the teacher's sentence vectors, token vectors in context and vocabulary vectors,
                  computed once into a memory-mapped, resumable cache

The trainer (`distill.training`) reads the targets; nothing here knows about students.
"""
