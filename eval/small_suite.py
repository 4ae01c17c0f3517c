"""The data of the small task suite that ships: built offline from text the installed packages already hold.

    chat_qa()      retrieval: chatterbot-corpus's questions, each to find its own answer among all the answers
    polarity()     classification: gensim's 200 labelled movie-review sentences, half to train a head, half to test it
    chat_topics()  clustering: chatterbot-corpus's questions by the topic file they come from (ai, food, sports...)

None of it is in the default training corpus, and every set is small (hundreds to two thousand
texts): the figures say which way a student leans, not what it scores on a public benchmark.
"""

from __future__ import annotations

from distill.data.domains import CODE_CATEGORIES, chat_conversations
from eval.retrieval import RetrievalData
from eval.tasks import PolarityProbe

TOPIC_MIN, TOPIC_MAX = 10, 50  # a topic clustered needs this many questions; the first TOPIC_MAX of each count


def chat_qa() -> RetrievalData:
    """Questions as queries, the distinct answers as documents; a question's answers are its relevant documents."""
    answers: dict[str, str] = {}  # answer text -> document id
    questions: dict[str, str] = {}  # question text -> query id
    qrels: dict[str, dict[str, int]] = {}
    for topic, conversations in chat_conversations().items():
        if topic in CODE_CATEGORIES:
            continue
        for conversation in conversations:
            if len(conversation) < 2:
                continue
            question, answer = (" ".join(turn.split()) for turn in conversation[:2])
            if not question or not answer:
                continue
            document = answers.setdefault(answer, f"a{len(answers)}")
            query = questions.setdefault(question, f"q{len(questions)}")
            qrels.setdefault(query, {})[document] = 1
    return RetrievalData({d: text for text, d in answers.items()}, {q: text for text, q in questions.items()}, qrels)


def polarity() -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    """((train texts, labels), (test texts, labels)): every other sentence of each class in the test half."""
    probe = PolarityProbe()
    labels = ["positive" if label else "negative" for label in probe.labels]
    train: tuple[list[str], list[str]] = ([], [])
    test: tuple[list[str], list[str]] = ([], [])
    seen: dict[str, int] = {}
    for text, label in zip(probe.texts, labels, strict=True):
        seen[label] = seen.get(label, 0) + 1
        half = test if seen[label] % 2 == 0 else train
        half[0].append(text)
        half[1].append(label)
    return train, test


def chat_topics() -> tuple[list[str], list[str]]:
    """(questions, their topics): the first question of each conversation, topics with too few left out."""
    texts: list[str] = []
    labels: list[str] = []
    for topic, conversations in chat_conversations().items():
        questions = list(dict.fromkeys(" ".join(c[0].split()) for c in conversations if c and c[0].strip()))
        if topic in CODE_CATEGORIES or len(questions) < TOPIC_MIN:
            continue
        texts += questions[:TOPIC_MAX]
        labels += [topic] * len(questions[:TOPIC_MAX])
    return texts, labels
