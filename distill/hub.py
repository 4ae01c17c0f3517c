"""`distill push`: a student or export folder to a Hugging Face Hub repository, with `huggingface_hub`.

The token is the usual `HF_TOKEN` (or the one `hf auth login` stored). Anything that stops the upload (no token,
no network, a refused repository) is one line that says what to change.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from distill.errors import DistillError

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
MODEL_FILES = ("student.json", "config.json")  # a saved student's, an export's


def check_folder(folder: str | Path) -> Path:
    """`folder` if it is a student or export folder with its model card; a DistillError otherwise."""
    path = Path(folder)
    if not path.is_dir() or not any((path / name).is_file() for name in MODEL_FILES):
        raise DistillError(f"{str(folder)!r} is not a saved student or an export folder (no student.json or "
                           "config.json in it)")  # fmt: skip
    if not (path / CARD_FILE).is_file():
        raise DistillError(f"{str(folder)!r} has no model card ({CARD_FILE}); `distill run`, `distill export` and "
                           "`distill eval` write one")  # fmt: skip
    return path


def push(folder: str | Path, repo: str, *, private: bool = False, token: str | None = None) -> str:
    """Create `repo` ("org/name") if it does not exist and upload `folder` into it; the repository's URL."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    path = check_folder(folder)
    if not re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", repo):
        raise DistillError(f"--repo {repo!r} is not a Hub repository name; give it as ORG/NAME")
    token = token or get_token()  # NOTE: HF_TOKEN, else what `hf auth login` stored
    if not token:
        raise DistillError("no Hugging Face token: set HF_TOKEN (a token with write access) or run `hf auth login`")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(path), repo_id=repo, commit_message=f"distill push {path.name}",
                          ignore_patterns=[".*"])  # fmt: skip
    except (OSError, ValueError, HfHubHTTPError, *_http_errors()) as e:  # NOTE: offline, a refusal, a bad token
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistillError(f"could not push {str(folder)!r} to {repo!r}: {reason}") from e
    logger.info("pushed %s to %s", path, url)
    return str(url)


def _http_errors() -> tuple[type[Exception], ...]:
    """httpx's errors: huggingface_hub 1.x's client raises them (requests' before it are OSErrors)."""
    try:
        import httpx
    except ImportError:
        return ()
    return (httpx.HTTPError,)
