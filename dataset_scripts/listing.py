"""Which files under an input folder are inputs: hidden files and folders (a name starting with `.`: `.DS_Store`,
`.git/`, `.ipynb_checkpoints/`, editors' `._ABC1234.png` twins) are not. They are left out with a reason in
`skipped.csv`, one row per hidden file or folder, instead of becoming samples: a file name that labels its crop
would turn `.hidden.png` into a plate reading `HIDDEN`.
"""

from collections.abc import Iterable
from pathlib import Path

from .reports import InputProblem, SkipLog


def hidden_entry(path: Path, root: Path) -> Path | None:
    """The first hidden file or folder on the way from `root` to `path` (`root` itself may be anywhere), or None."""
    relative = Path(path).relative_to(root)
    for depth, part in enumerate(relative.parts):
        if part.startswith("."):
            return Path(root, *relative.parts[: depth + 1])
    return None


def skip_hidden(paths: Iterable[Path], root: Path, skip_log: SkipLog) -> list[Path]:
    """`paths` (all under `root`) without the hidden ones; each hidden file or folder is logged once."""
    kept, logged = [], set()
    for path in paths:
        hidden = hidden_entry(path, root)
        if hidden is None:
            kept.append(path)
        elif hidden not in logged:
            logged.add(hidden)
            kind = "folder" if hidden.is_dir() else "file"
            skip_log.add(
                InputProblem(
                    hidden.relative_to(root).as_posix() + ("/" if kind == "folder" else ""),
                    f"hidden_{kind}",
                    f"hidden {kind} (its name starts with '.'); not read as input",
                )
            )
    return kept


__all__ = ["hidden_entry", "skip_hidden"]
