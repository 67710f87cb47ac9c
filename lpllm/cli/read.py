"""`lpllm read`: reads the plates in image files, folders and glob patterns with any reader `lpllm eval` loads (an
LP-LLM or stock Qwen3-VL checkpoint, a CTC baseline, a fast-plate-ocr export).

    lpllm read plate.jpg crops/ 'more/*.png' --model runs/lpllm/final               # file<TAB>text per plate
    lpllm read crops/ --model runs/lpllm/final --format csv --output readings.csv     # or --format json

Several processes split the inputs and write one output, the same as one process writes (docs/reading.md):

    accelerate launch --num_processes 4 -m lpllm.cli read crops/ --model M --format csv --output readings.csv
    torchrun --nproc_per_node 2 -m lpllm.cli read crops/ --model M --format csv --output readings.csv   # CPUs

A folder is searched recursively for image files (`IMAGE_EXTENSIONS`, hidden entries skipped), a glob pattern's
matches likewise; a file named on the command line is read whatever its extension. Inputs are read in the order
given, each folder and pattern in sorted order, every file once. Every image passes the image gate
(`modeling_lpllm/image_checks.py`): a file it refuses is reported with its reason and the others are still read. The
exit status is 0 when every input was read, 1 when any failed; a path that does not exist, a pattern that matches
nothing, a folder without images or an output file that exists (without `--overwrite`) stop the command before the
model loads.
"""

import csv
import glob
import io
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm
from trl import TrlParser

from modeling_lpllm.image_checks import ImageInputError, load_image_input
from modeling_lpllm.plate_reading import check_max_new_tokens, check_prompt

from ..evaluation.model_sources import check_model_reference
from ..evaluation.outputs import atomic_write_text
from ..evaluation.sharding import end_processes, gather_shards, process_state, reading_device, shard
from .reader_arguments import ReaderArguments
from .recognizers import load_recognizer


IMAGE_EXTENSIONS = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})
# Columns of the CSV output and keys of each JSON object; `text` is empty (CSV) or null (JSON) for a failed input.
OUTPUT_FIELDS = ("file", "text", "error")
# A progress bar appears once a run has lasted this long, so reading a few plates prints nothing but the readings.
PROGRESS_DELAY_SECONDS = 3.0

logger = logging.getLogger("read")


@dataclass
class ReadArguments(ReaderArguments):
    """Arguments of `lpllm read`: what to read (`paths`, also given positionally), with which model, and where the
    readings go."""

    model: str = field(
        metadata={"help": "The reader: an LP-LLM or Qwen3-VL checkpoint dir or Hub id, a baseline or fast-plate-ocr "
        "dir."}
    )
    paths: list[str] | None = field(
        default=None,
        metadata={"help": "Image files, folders (searched recursively for images) or glob patterns; usually given "
        "positionally: `lpllm read PATH... --model M`."},
    )
    format: Literal["text", "json", "csv"] = field(
        default="text",
        metadata={"help": "'text': a `file<TAB>text` line per plate read; 'json': a list of {file, text, error}; "
        "'csv': columns file,text,error."},
    )
    output: str | None = field(
        default=None, metadata={"help": "Write the readings to this file (atomically) instead of standard output."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing `output` file."})
    num_views: int | None = field(
        default=None,
        metadata={"help": "Read each plate from this many views of its crop (None: the checkpoint's processor's "
        "num_views, else 1)."},
    )
    prompt: str | None = field(
        default=None, metadata={"help": "Instruction for a Qwen3-VL-family model (None: DEFAULT_PROMPT)."}
    )
    log_level: str = field(default="WARNING", metadata={"help": "Logging level (DEBUG, INFO, WARNING, ...)."})

    def __post_init__(self):
        for name in ("batch_size", "num_views"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
        if self.max_new_tokens is not None:
            check_max_new_tokens(self.max_new_tokens)
        check_prompt(self.prompt)
        if not isinstance(logging.getLevelName(str(self.log_level).upper()), int):
            raise ValueError(f"`log_level` must be a logging level such as INFO or WARNING, got {self.log_level!r}.")
        if self.output is not None:
            output = Path(self.output)
            if output.is_dir():
                raise IsADirectoryError(f"`output` {self.output!r} is a folder; expected a file name.")
            if output.exists() and not self.overwrite:
                raise FileExistsError(
                    f"`output` {self.output!r} exists. Pass --overwrite to replace it, or choose a new file name."
                )
        check_model_reference(self.model, "model")


@dataclass(frozen=True)
class PlateInput:
    """One plate to read: `name` is how the output names it, `files` are its images (one crop; the frames of a
    track are several files of one plate)."""

    name: str
    files: tuple[str, ...]


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def _images_under(folder: str) -> list[str]:
    """The image files under `folder`, recursively, in sorted order, hidden files and folders left out."""
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found += [
            os.path.join(root, name)
            for name in sorted(files)
            if not name.startswith(".") and _is_image_file(Path(root, name))
        ]
    return found


def _expand(path: str) -> list[str]:
    """The files `path` stands for (see the module docstring).

    Raises:
        FileNotFoundError: naming `path`, when it does not exist, matches nothing or holds no image.
    """
    if glob.has_magic(path):
        found = []
        for match in sorted(glob.glob(path, recursive=True)):
            found += _images_under(match) if os.path.isdir(match) else [match] if _is_image_file(Path(match)) else []
        if not found:
            raise FileNotFoundError(
                f"{path!r} matches no image file (extensions {', '.join(sorted(IMAGE_EXTENSIONS))})."
            )
        return found
    if os.path.isdir(path):
        found = _images_under(path)
        if not found:
            raise FileNotFoundError(
                f"Folder {path!r} holds no image file (extensions {', '.join(sorted(IMAGE_EXTENSIONS))})."
            )
        return found
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r}: no such file or folder ({os.path.abspath(path)}).")
    return [path]


def collect_inputs(paths: list[str]) -> list[PlateInput]:
    """The plates to read from `paths` (files, folders, glob patterns), in the order given, each file once.

    Raises:
        ValueError: when `paths` is empty.
        FileNotFoundError: naming the first path that does not exist, matches nothing or holds no image.
    """
    if not paths:
        raise ValueError(
            "Nothing to read: give image files, folders or glob patterns (`lpllm read PATH... --model M`)."
        )
    inputs, seen = [], set()
    for path in paths:
        for file in _expand(path):
            key = os.path.normcase(os.path.abspath(file))
            if key not in seen:
                seen.add(key)
                inputs.append(PlateInput(name=file, files=(file,)))
    return inputs


def read_inputs(recognizer, inputs: list[PlateInput], batch_size: int, progress: bool = True) -> list[dict]:
    """One record `{file, text, error}` per input, in order: `text` the reading and `error` None, or `text` None and
    `error` the image gate's reason when a file of the input was refused."""
    records = []
    bar = tqdm(total=len(inputs), desc="Reading", unit="plate", disable=not progress, delay=PROGRESS_DELAY_SECONDS)
    with bar:
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            loaded, batch_records = [], []
            for item in batch:
                record = {"file": item.name, "text": None, "error": None}
                try:
                    loaded.append((record, [load_image_input(file) for file in item.files]))
                except ImageInputError as error:
                    # A crop's record names its file already; a track's says which of its frames was refused.
                    record["error"] = error.message if len(item.files) == 1 else str(error)
                batch_records.append(record)
            if loaded:
                texts = recognizer.read([images for _, images in loaded])
                if len(texts) != len(loaded):
                    raise RuntimeError(f"{recognizer.name} returned {len(texts)} readings for {len(loaded)} plates.")
                for (record, _), text in zip(loaded, texts):
                    record["text"] = "" if text is None else str(text)
            records += batch_records
            bar.update(len(batch))
    return records


def format_records(records: list[dict], output_format: str) -> str:
    """The readings as `output_format` ('text': the plates read, one `file<TAB>text` line each; 'json'; 'csv')."""
    if output_format == "json":
        objects = [{key: record[key] for key in OUTPUT_FIELDS} for record in records]
        return json.dumps(objects, indent=2, ensure_ascii=False) + "\n"
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=OUTPUT_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buffer.getvalue()
    return "".join(f"{record['file']}\t{record['text']}\n" for record in records if record["error"] is None)


def parse_arguments(argv: list[str] | None = None) -> ReadArguments:
    """The command line (and any `--config` YAML file) as `ReadArguments`, the positional paths in `paths`."""
    description = __doc__.split("\n\n")[0] + " Options also come from a YAML file: --config FILE.yaml."
    parser = TrlParser(ReadArguments, description=description)
    parser.add_argument("positional_paths", nargs="*", metavar="PATH", help="Image files, folders or glob patterns.")
    args, extra, remaining = parser.parse_args_and_config(argv, return_remaining_strings=True)
    unknown = [value for value in remaining if value.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    # argparse takes the positional paths before the first option; the ones after it come back as remaining strings.
    args.paths = [*extra.positional_paths, *remaining, *(args.paths or [])]
    return args


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0: every input read, 1: some input failed)."""
    args = parse_arguments(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    inputs = collect_inputs(args.paths)
    state = process_state(args.device)
    recognizer = load_recognizer(
        args.model,
        device=reading_device(state, args.device),
        dtype=args.dtype,
        max_new_tokens=args.max_new_tokens,
        prompt=args.prompt,
        num_views=args.num_views,
        trust_remote_code=args.trust_remote_code,
    )
    began = time.perf_counter()
    records = read_inputs(recognizer, shard(inputs, state), args.batch_size, progress=state.is_main_process)
    records = gather_shards(records, state)
    failed = [record for record in records if record["error"] is not None]
    if state.is_main_process:
        logger.info(
            "Read %d plates (%d failed) in %.2f s on %d process(es).",
            len(records), len(failed), time.perf_counter() - began, state.num_processes,
        )  # fmt: skip
        text = format_records(records, args.format)
        if args.output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            atomic_write_text(args.output, text)
        if failed:
            report = "".join(f"  {record['file']}: {record['error']}\n" for record in failed)
            sys.stderr.write(f"lpllm read: {len(failed)} of {len(records)} inputs could not be read:\n{report}")
    end_processes(state)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
