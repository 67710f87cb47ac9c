"""Where a model comes from (a local folder or a Hub repo id), and whether its own Python code may run.

A transformers checkpoint may carry modelling code beside its weights (`auto_map` in its config.json); loading it with
`trust_remote_code=True` runs that code on this machine. A folder this project wrote (an LP-LLM checkpoint: config
`model_type: lpllm` and the code files its `auto_map` names, beside it) is the user's own model and loads without
asking. Any other model that brings code loads only when the user opts in with `trust_remote_code`.
"""

import json
import os
from pathlib import Path

from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import AutoConfig


LPLLM_MODEL_TYPE = "lpllm"


def looks_like_hub_repo_id(reference: str) -> bool:
    """Whether `reference` has the form of a Hub repo id (`name` or `owner/name`, by huggingface_hub's own rule)
    rather than only of a local path (`./x`, `/x`, `~/x`, `a/b/c`)."""
    try:
        validate_repo_id(reference)
    except HFValidationError:
        return False
    return True


def check_model_reference(reference: str, field_name: str) -> str:
    """`reference` when it is an existing local path or has the form of a Hub repo id.

    Raises:
        FileNotFoundError: naming `field_name`, for a local path (absolute, relative with `./`, or several folders
            deep) that does not exist, instead of the Hub lookup error it would otherwise become.
    """
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError(f"`{field_name}` must be a checkpoint folder or a Hub repo id; got {reference!r}.")
    if os.path.exists(os.path.expanduser(reference)) or looks_like_hub_repo_id(reference):
        return reference
    raise FileNotFoundError(
        f"`{field_name}` {reference!r}: no such folder ({os.path.abspath(os.path.expanduser(reference))}); expected "
        "a checkpoint folder (with config.json) or a Hub repo id of the form owner/name."
    )


def is_project_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a local LP-LLM checkpoint folder: config.json with `model_type: lpllm` and every module its
    `auto_map` names saved beside it (none taken from another repo)."""
    folder = Path(os.path.expanduser(os.fspath(path)))
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or config.get("model_type") != LPLLM_MODEL_TYPE:
        return False
    references = []
    for value in (config.get("auto_map") or {}).values():
        references.extend(value if isinstance(value, (list, tuple)) else [value])
    references = [reference for reference in references if isinstance(reference, str)]
    if not references or any("--" in reference for reference in references):  # `repo--module.Class`: another repo's
        return False
    return all((folder / f"{reference.rsplit('.', 1)[0]}.py").is_file() for reference in references)


def remote_code_allowed(reference: str, trust_remote_code: bool = False) -> bool:
    """The `trust_remote_code` to load `reference` with: the user's opt-in, or True for a project checkpoint.

    Raises:
        ValueError: when `reference` brings its own code and the user did not opt in, saying why the flag is needed.
    """
    if trust_remote_code or is_project_checkpoint(reference):
        return True
    try:
        AutoConfig.from_pretrained(reference, trust_remote_code=False)
    except ValueError as error:
        if "trust_remote_code" not in str(error):
            raise
        raise ValueError(
            f"{reference} ships its own Python code (`auto_map` in its config.json), and loading it would run that "
            "code on this machine. It is not an LP-LLM checkpoint folder this project wrote, so it is not run "
            "without your consent: pass --trust_remote_code if you trust its source."
        ) from None
    except OSError:
        pass  # not found or unreachable: the loader reports it in its own words
    return False


__all__ = [
    "LPLLM_MODEL_TYPE",
    "check_model_reference",
    "is_project_checkpoint",
    "looks_like_hub_repo_id",
    "remote_code_allowed",
]
