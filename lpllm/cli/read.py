"""`lpllm read`: reads the plates in image files, folders and glob patterns with any reader `lpllm eval` loads (an
LP-LLM or stock Qwen3-VL checkpoint, a CTC baseline, a fast-plate-ocr export).

    lpllm read plate.jpg crops/ 'more/*.png' --model runs/lpllm/final               # file<TAB>text<TAB>score
    lpllm read crops/ --model runs/lpllm/final --format csv --output readings.csv     # or --format json
    lpllm read crops/ --model runs/lpllm/final --format json --top_k 5 --min_score saved
    lpllm read 'tracks/*' --tracks --model runs/lpllm/final   # a folder per plate: its frames read as one track

Several processes split the inputs and write one output, the same as one process writes (docs/reading.md):

    accelerate launch --num_processes 4 -m lpllm.cli read crops/ --model M --format csv --output readings.csv
    torchrun --nproc_per_node 2 -m lpllm.cli read crops/ --model M --format csv --output readings.csv   # CPUs

A reading has its text, `score` (the probability that the whole plate is right, calibrated when the model was),
`char_scores` (one per character) and `regions` (the codes of the region plate patterns the text fits); `--top_k K`
adds its K best `candidates`, ranked by `--region`; `--min_score` (a number, or `saved` for the model's abstain
threshold) turns a reading scored below it into an unreadable one (`text` "", `unreadable`, `rejected_text`), as the
pipeline's `min_score` does. A reader without scores (a CTC baseline, fast-plate-ocr, RapidOCR) has empty scores and
refuses `--top_k` above 1, `--constrain` and `--min_score`. The formats: docs/reading.md.

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
from modeling_lpllm.plate_patterns import matching_regions
from modeling_lpllm.plate_reading import check_prompt
from modeling_lpllm.plate_scores import check_min_score

from ..evaluation.model_sources import check_model_reference
from ..evaluation.outputs import atomic_write_text
from ..evaluation.report import format_candidates
from ..evaluation.sharding import end_processes, gather_shards, process_state, reading_device, shard
from .reader_arguments import ReaderArguments, check_counts
from .recognizers import load_recognizer


IMAGE_EXTENSIONS = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})
# Columns of the CSV output, whatever the options; an entry that does not apply (a failed input's text, a score of a
# reader without scores, `unreadable` without `--min_score`) is empty.
CSV_COLUMNS = (
    "file", "text", "score", "min_char_score", "regions", "candidates", "unreadable", "rejected_text", "error"
)  # fmt: skip
# A tab or line break inside a text would split its line of the text format: it is written as an escape.
TEXT_FORMAT_ESCAPES = str.maketrans({"\t": "\\t", "\n": "\\n", "\r": "\\r"})
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
        metadata={"help": "'text': a `file<TAB>text<TAB>score` line per plate read; 'json': a list of {file, text, "
        "score, char_scores, regions, [candidates], [unreadable, rejected_text], error}; 'csv': columns "
        + ",".join(CSV_COLUMNS) + "."},
    )
    min_score: float | str | None = field(
        default=None,
        metadata={"help": "A reading scored below this (a number in [0, 1], or `saved`: the model's abstain "
        "threshold) is unreadable: empty text, its reading in rejected_text. None: every reading is kept."},
    )
    output: str | None = field(
        default=None, metadata={"help": "Write the readings to this file (atomically) instead of standard output."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing `output` file."})
    tracks: bool = field(
        default=False,
        metadata={"help": "Every path is a folder holding the frames of one plate (a track), read as one plate by "
        "`fusion`; the output names the folder."},
    )
    num_views: int | None = field(
        default=None,
        metadata={"help": "Read each plate from this many views of its crop (a track read by late fusion spreads "
        "them over its frames; None: the checkpoint's processor's num_views, else 1)."},
    )
    prompt: str | None = field(
        default=None, metadata={"help": "Instruction for a Qwen3-VL-family model (None: DEFAULT_PROMPT)."}
    )
    log_level: str = field(default="WARNING", metadata={"help": "Logging level (DEBUG, INFO, WARNING, ...)."})

    def __post_init__(self):
        super().__post_init__()
        self.min_score = parse_min_score(self.min_score)
        check_counts(self, ("num_views",))
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


def collect_tracks(paths: list[str]) -> list[PlateInput]:
    """One plate per folder of `paths` (folders, or glob patterns matching folders): its images, in sorted order,
    are the frames of one track, and the folder names it.

    Raises:
        FileNotFoundError: naming the first path that is not a folder, matches no folder or holds no image.
    """
    tracks, seen = [], set()
    for path in paths:
        folders = sorted(match for match in glob.glob(path) if os.path.isdir(match)) if glob.has_magic(path) else [path]
        if not folders or not all(os.path.isdir(folder) for folder in folders):
            raise FileNotFoundError(f"{path!r}: with --tracks every path is a folder of one plate's frames.")
        for folder in folders:
            key = os.path.normcase(os.path.abspath(folder))
            if key not in seen:
                seen.add(key)
                tracks.append(PlateInput(name=folder, files=tuple(_expand(folder))))
    return tracks


def collect_inputs(paths: list[str], tracks: bool = False) -> list[PlateInput]:
    """The plates to read from `paths` (files, folders, glob patterns), in the order given, each file once; with
    `tracks`, one plate per folder (`collect_tracks`).

    Raises:
        ValueError: when `paths` is empty.
        FileNotFoundError: naming the first path that does not exist, matches nothing or holds no image.
    """
    if not paths:
        raise ValueError(
            "Nothing to read: give image files, folders or glob patterns (`lpllm read PATH... --model M`)."
        )
    if tracks:
        return collect_tracks(paths)
    inputs, seen = [], set()
    for path in paths:
        for file in _expand(path):
            key = os.path.normcase(os.path.abspath(file))
            if key not in seen:
                seen.add(key)
                inputs.append(PlateInput(name=file, files=(file,)))
    return inputs


def parse_min_score(min_score) -> float | str | None:
    """`--min_score` as a float in [0, 1], the word `saved`, or None.

    Raises:
        ValueError: naming `min_score` and what it takes.
    """
    if isinstance(min_score, str):
        if min_score.strip().lower() == "saved":
            return "saved"
        try:
            min_score = float(min_score)
        except ValueError:
            raise ValueError(
                f"`min_score` must be a number in [0, 1] or the word saved (the model's abstain threshold); got "
                f"{min_score!r}."
            ) from None
    return check_min_score(min_score)


def resolve_min_score(min_score: float | str | None, recognizer) -> float | None:
    """The lowest score `recognizer`'s readings are accepted at: `min_score`, or for `saved` the model's abstain
    threshold.

    Raises:
        ValueError: for a `min_score` with a reader that gives no scores, or `saved` with a model that has no abstain
            threshold (one that was not calibrated).
    """
    if min_score is None:
        return None
    if not hasattr(recognizer, "read_scored"):
        raise ValueError(
            f"`min_score` needs plate scores, and {recognizer.name} ({recognizer.paradigm}) gives none: read without "
            "--min_score, or with an LP-LLM or Qwen3-VL model."
        )
    if min_score != "saved":
        return min_score
    threshold = getattr(recognizer, "abstain_threshold", None)
    if threshold is None:
        raise ValueError(
            f"--min_score saved takes the model's abstain threshold, and {recognizer.name} has none (it was not "
            "calibrated: `lpllm calibrate --model M ...` fits one). Give a number in [0, 1] instead."
        )
    return check_min_score(threshold, f"{recognizer.name}'s abstain_threshold")


def record_keys(candidates: bool = False, min_score: bool = False) -> tuple[str, ...]:
    """The keys of every JSON record, in order: `candidates` with `--top_k` above 1, `unreadable` and `rejected_text`
    with `--min_score`."""
    return (
        "file", "text", "score", "char_scores", "regions",
        *(("candidates",) if candidates else ()),
        *(("unreadable", "rejected_text") if min_score else ()),
        "error",
    )  # fmt: skip


def _read_batch(recognizer, batch: list[list]) -> list[dict]:
    """One reading per sample: the reader's own (`read_scored`) when it scores its plates, else its text alone."""
    read_scored = getattr(recognizer, "read_scored", None)
    if read_scored is not None:
        readings = read_scored(batch)
    else:
        readings = [{"text": "" if text is None else str(text)} for text in recognizer.read(batch)]
    if len(readings) != len(batch):
        raise RuntimeError(f"{recognizer.name} returned {len(readings)} readings for {len(batch)} plates.")
    return readings


def _reading_fields(reading: dict, keys: tuple[str, ...], min_score: float | None) -> dict:
    """A record's fields for `reading` (`read_inputs`)."""
    text = "" if reading.get("text") is None else str(reading["text"])
    fields = {
        "text": text,
        "score": reading.get("score"),
        "char_scores": reading.get("char_scores"),
        # A reader that does not rank by region still says which regions' patterns its text fits.
        "regions": reading["regions"] if "regions" in reading else matching_regions(text),
    }
    if "candidates" in keys:
        fields["candidates"] = [
            {
                "text": candidate["text"],
                "score": candidate.get("score"),
                "regions": candidate["regions"] if "regions" in candidate else matching_regions(candidate["text"]),
            }
            for candidate in reading.get("candidates") or []
        ]
    if min_score is not None:
        fields["unreadable"] = fields["score"] < min_score
        fields["rejected_text"] = text if fields["unreadable"] else None
        if fields["unreadable"]:
            fields["text"] = ""
    return fields


def read_inputs(
    recognizer, inputs: list[PlateInput], batch_size: int, progress: bool = True, min_score: float | None = None
) -> list[dict]:
    """One record per input, in order, with the keys of `record_keys`: the reading (`_reading_fields`) and `error`
    None, or every reading field None and `error` the image gate's reason when a file of the input was refused.

    `min_score`: readings scored below it are unreadable (`text` "", `unreadable` True, the text in
    `rejected_text`); it needs a reader with scores (`resolve_min_score`).
    """
    keys = record_keys(getattr(recognizer, "top_k", 1) > 1, min_score is not None)
    records = []
    bar = tqdm(total=len(inputs), desc="Reading", unit="plate", disable=not progress, delay=PROGRESS_DELAY_SECONDS)
    with bar:
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            loaded, batch_records = [], []
            for item in batch:
                record = {**dict.fromkeys(keys), "file": item.name}
                try:
                    loaded.append((record, [load_image_input(file) for file in item.files]))
                except ImageInputError as error:
                    # A crop's record names its file already; a track's says which of its frames was refused.
                    record["error"] = error.message if len(item.files) == 1 else str(error)
                batch_records.append(record)
            if loaded:
                readings = _read_batch(recognizer, [images for _, images in loaded])
                for (record, _), reading in zip(loaded, readings):
                    record.update(_reading_fields(reading, keys, min_score))
            records += batch_records
            bar.update(len(batch))
    return records


def _csv_row(record: dict) -> dict:
    char_scores, unreadable = record.get("char_scores"), record.get("unreadable")
    return {
        **{key: "" if record.get(key) is None else record[key] for key in ("file", "text", "score", "error")},
        "min_char_score": min(char_scores) if char_scores else "",
        "regions": " ".join(record.get("regions") or []),
        "candidates": format_candidates(record.get("candidates")),
        "unreadable": "" if unreadable is None else int(unreadable),
        "rejected_text": record.get("rejected_text") or "",
    }


def _text_line(record: dict) -> str:
    score = "" if record["score"] is None else f"{record['score']:.4f}"
    return f"{record['file']}\t{record['text'].translate(TEXT_FORMAT_ESCAPES)}\t{score}\n"


def format_records(records: list[dict], output_format: str) -> str:
    """The readings as `output_format`: 'text', a `file<TAB>text<TAB>score` line per plate read (score to 4
    decimals, empty for a reader without scores; an unreadable plate has an empty text; a tab or line break in a text
    written as `\\t`, `\\n`, `\\r`); 'json', the records; 'csv', the `CSV_COLUMNS` (`regions` space-separated,
    `candidates` as `TEXT:score|TEXT:score`, `unreadable` 1 or 0)."""
    if output_format == "json":
        return json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_csv_row(record) for record in records)
        return buffer.getvalue()
    return "".join(_text_line(record) for record in records if record["error"] is None)


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
    inputs = collect_inputs(args.paths, args.tracks)
    state = process_state(args.device)
    recognizer = load_recognizer(
        args.model,
        device=reading_device(state, args.device),
        dtype=args.dtype,
        max_new_tokens=args.max_new_tokens,
        prompt=args.prompt,
        num_views=args.num_views,
        top_k=args.top_k,
        num_beams=args.num_beams,
        region=args.region,
        constrain=args.constrain,
        fusion=args.fusion,
        trust_remote_code=args.trust_remote_code,
    )
    min_score = resolve_min_score(args.min_score, recognizer)
    began = time.perf_counter()
    records = read_inputs(
        recognizer, shard(inputs, state), args.batch_size, progress=state.is_main_process, min_score=min_score
    )
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
