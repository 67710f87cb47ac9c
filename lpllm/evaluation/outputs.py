"""Writing report files safely: an output directory is never written over without `--overwrite`, and every file
appears whole or not at all (written to a temporary file in the same directory, then `os.replace`d)."""

import csv
import io
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path


def prepare_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Creates `path`, refusing to reuse a non-empty directory unless `overwrite` is set (then files of the same
    name are replaced and other files are left alone).

    Raises:
        FileExistsError: naming the directory, when it holds files and `overwrite` is off.
        NotADirectoryError: when `path` is a file.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"Output path {path} exists and is not a directory.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"Output directory {path} is not empty. Pass --overwrite to replace its reports, or choose a new"
            " directory."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same directory and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened with "x" (not mkstemp, whose 0600 mode would survive the rename): the file gets the
    # user's usual permissions.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, payload) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def atomic_write_csv(path: str | os.PathLike, fieldnames: list[str], rows: Iterable[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def atomic_save_figure(figure, path: str | os.PathLike, **savefig_kwargs) -> None:
    """Saves a matplotlib figure as PNG atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **savefig_kwargs)
    atomic_write_bytes(path, buffer.getvalue())


def _json_default(value):
    # numpy scalars and paths turn up in metadata; everything else is a bug worth a TypeError.
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serialisable")


__all__ = [
    "atomic_save_figure",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_json",
    "atomic_write_text",
    "prepare_output_dir",
]
