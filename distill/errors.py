"""The one exception type that means "the user must change something"."""


class DistillError(Exception):
    """A user's mistake: a missing file, an unknown teacher, an empty corpus, a bad setting.

    The CLI prints its message as one line and exits with status 2; anything else is a bug
    and keeps its traceback.
    """
