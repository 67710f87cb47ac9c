"""Atomic output folders: a build is written to a temporary sibling folder and moved into place only when
complete, so an interrupted or failed run never leaves a half-written dataset, and an existing one is only
replaced with `overwrite=True`, and only when it is a dataset this builder wrote: `--overwrite` pointed at the
wrong folder must not delete someone's files."""

import logging
import os
import shutil
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)


# What every build leaves in its folder (`save_to_disk`'s index and our summary); a folder without both was not
# written by this builder.
BUILD_MARKERS = ("dataset_dict.json", "summary.json")


class OutputExistsError(FileExistsError):
    """The output folder exists and `overwrite` was not asked for, or it is not a dataset this builder wrote."""


def _describe_contents(folder: Path, limit: int = 5) -> str:
    names = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in folder.iterdir())
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} entries)" if len(names) > limit else shown


def _is_within(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
        return True
    except ValueError:
        return False


def check_output_dir(output_dir: Path, overwrite: bool, inputs: list[Path] = ()) -> Path:
    """Checks that the build may write `output_dir` and returns it resolved.

    Raises:
        OutputExistsError: `output_dir` exists (and is not empty) and `overwrite` is False, or it holds something
            other than a dataset this builder wrote (`BUILD_MARKERS`), which `overwrite` never replaces.
        ValueError: `output_dir` is an existing file, lies inside an input folder (inputs are never written
            to) or contains an input (replacing it would delete the input). An input that is a file (a label
            file) only has to stay out of the output.
    """
    output_dir = Path(output_dir).expanduser().resolve()
    for source in inputs:
        source = Path(source).expanduser().resolve()
        if source.is_dir() and _is_within(output_dir, source):
            raise ValueError(
                f"Output folder {output_dir} is inside the input folder {source}; inputs are never written to. "
                "Choose another --output."
            )
        if _is_within(source, output_dir):
            raise ValueError(
                f"Input {source} is inside the output folder {output_dir}; replacing the output would delete it. "
                "Choose another --output."
            )
    if output_dir.exists():
        if not output_dir.is_dir():
            raise ValueError(f"Output path {output_dir} exists and is not a folder.")
        if not any(output_dir.iterdir()):
            return output_dir
        missing = [name for name in BUILD_MARKERS if not (output_dir / name).is_file()]
        if missing:
            raise OutputExistsError(
                f"Output folder {output_dir} is not a dataset written by dataset_scripts.build (no "
                f"{' or '.join(missing)}; it holds {_describe_contents(output_dir)}); a build never replaces it, "
                "not even with --overwrite. Choose a new or empty --output folder."
            )
        if not overwrite:
            raise OutputExistsError(
                f"Output folder {output_dir} already exists; pass --overwrite (overwrite=True) to replace it."
            )
    return output_dir


class AtomicOutputDir:
    """Context manager yielding a fresh temporary folder beside `output_dir` (same file system, so the final
    move is a rename). `commit()` moves it into place, replacing an old `output_dir` only then; leaving the
    context without `commit()` (e.g. on an error) deletes it."""

    def __init__(self, output_dir: Path, overwrite: bool = False):
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.temp_dir = self.output_dir.parent / f".{self.output_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.committed = False

    def __enter__(self) -> Path:
        self.output_dir.parent.mkdir(parents=True, exist_ok=True)
        self.temp_dir.mkdir()
        return self.temp_dir

    def commit(self) -> None:
        old = None
        if self.output_dir.is_dir() and not any(self.output_dir.iterdir()):
            self.output_dir.rmdir()  # an empty folder holds nothing to lose
        if self.output_dir.exists():
            if not self.overwrite:
                raise OutputExistsError(
                    f"Output folder {self.output_dir} appeared during the build; not replacing it without overwrite."
                )
            old = self.output_dir.parent / f".{self.output_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.output_dir, old)
        os.replace(self.temp_dir, self.output_dir)
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def __exit__(self, exc_type, exc, traceback):
        if not self.committed and self.temp_dir.exists():
            logger.debug("Removing incomplete output %s", self.temp_dir)
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        return False


__all__ = ["AtomicOutputDir", "BUILD_MARKERS", "OutputExistsError", "check_output_dir"]
