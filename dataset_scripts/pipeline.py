"""The build every source shares: list tasks, assign splits, turn tasks into samples (in parallel workers),
stream them into Arrow files, and move a complete dataset folder into place.

A source module only has to say which tasks exist (cheap: file names and annotations) and how one task becomes
a `Sample` (the expensive part: decoding, cropping, rendering). Problems found at either step become rows of
`skipped.csv`, or stop the run in strict mode.
"""

import logging
import multiprocessing
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_from_disk
from datasets.arrow_writer import ArrowWriter
from huggingface_hub import DatasetCard, create_repo
from tqdm.auto import tqdm

from modeling_lpllm.processing_lpllm import DEFAULT_PROMPT

from .card import dataset_card
from .output import AtomicOutputDir, check_output_dir
from .reports import InputProblem, NoSamplesError, SkipLog, write_summary
from .schema import FEATURES, Sample
from .splits import DEFAULT_RATIOS, SPLITS, assign_split

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One unit of work of a source: what becomes one sample. Must pickle (it goes to worker processes).

    Args:
        id: The sample id it becomes; unique in the dataset.
        name: How the input is named to the user (a file path relative to the input folder).
        group: Split key; tasks with one group share a split.
        split: The split the source itself assigns (its own split file or folders), or None to draw one.
        payload: Whatever the source's process function needs.
    """

    id: str
    name: str
    group: str
    split: str | None = None
    payload: Any = None


@dataclass
class BuildOptions:
    """Options common to every builder.

    Args:
        seed: Seeds the split draw (and synthetic generation).
        strict: Stop at the first bad input instead of skipping it.
        overwrite: Replace an existing output folder.
        num_workers: Worker processes for the per-sample work; 0 works in this process.
        ratios: Train/validation/test fractions for inputs the source does not assign a split.
        limit: Use at most this many inputs (the first ones in sorted order).
        prompt: The instruction in the user turn.
        parquet: Also write `data/{split}-00000-of-00001.parquet` beside the Arrow data.
        push_to_hub: A Hub dataset repo id to push the result to, with its card.
        private: Create the Hub repo private.
        progress: Show a progress bar.
    """

    seed: int = 0
    strict: bool = False
    overwrite: bool = False
    num_workers: int = 0
    ratios: tuple[float, float, float] = DEFAULT_RATIOS
    limit: int | None = None
    prompt: str = DEFAULT_PROMPT
    parquet: bool = True
    push_to_hub: str | None = None
    private: bool = False
    progress: bool = True


@dataclass
class BuildResult:
    """What a build produced: the saved dataset (memory-mapped from `output_dir`), the skipped inputs and the
    summary written to summary.json."""

    dataset: DatasetDict
    output_dir: Path
    skipped: list[InputProblem] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def _init_worker():
    # Two worker processes already fill two cores; OpenCV's own thread pool would only oversubscribe them.
    import cv2

    cv2.setNumThreads(1)


def _run_task(process: Callable[[Task], Sample], task: Task) -> Sample | InputProblem:
    try:
        return process(task)
    except InputProblem as problem:
        return problem
    except Exception as error:  # noqa: BLE001 - any failure on one input is reported for that input, not fatal
        logger.warning("Unexpected error on %s: %r", task.name, error)
        return InputProblem(task.name, "unexpected_error", f"{type(error).__name__}: {error}")


class _TaskRunner:
    """Picklable callable for `Pool.imap` that binds the source's process function."""

    def __init__(self, process):
        self.process = process

    def __call__(self, task):
        return _run_task(self.process, task)


def _results(tasks: list[Task], process, num_workers: int) -> Iterable[Sample | InputProblem]:
    runner = _TaskRunner(process)
    if num_workers <= 0 or len(tasks) < 2:
        yield from map(runner, tasks)
        return
    # Not fork: a worker forked from this process inherits its threads' locks (OpenCV's pool, Arrow, tqdm's
    # monitor) and can hang on them. A forkserver starts clean, imports this package once (torch and
    # transformers come with modeling_lpllm: seconds) and then forks each worker from that clean state; spawn,
    # the fallback where there is no forkserver (Windows), pays the import in every worker.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__package__])
    else:
        context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(64, len(tasks) // (num_workers * 8) or 1))
    with context.Pool(num_workers, initializer=_init_worker) as pool:
        yield from pool.imap(runner, tasks, chunksize=chunksize)


def run_build(
    source: str,
    tasks: Iterable[Task],
    process: Callable[[Task], Sample],
    output_dir: str | Path,
    options: BuildOptions,
    skip_log: SkipLog | None = None,
    inputs: list[Path] = (),
    extra_summary: dict | None = None,
) -> BuildResult:
    """Builds, saves and returns the dataset of `tasks`.

    Args:
        source: Source name written to the `source` column and the summary.
        tasks: Every input of the source, in a deterministic order.
        process: Turns one task into a `Sample`; raises `InputProblem` for bad input. Must pickle (a module-level
            function or a picklable callable) when `options.num_workers > 0`.
        output_dir: Where the dataset folder goes (see `check_output_dir`).
        options: Common options.
        skip_log: Problems found while listing the inputs (created if None).
        inputs: The input paths, which the output may not overlap.
        extra_summary: More entries for summary.json (e.g. the synthetic configuration).

    Raises:
        StrictModeError: in strict mode, on the first bad input.
        OutputExistsError: if `output_dir` exists and `options.overwrite` is False, or is not a dataset we wrote.
        NoSamplesError: no input became a sample (found before any work when there is none to process).
        ValueError: `options.limit` is below 1.
    """
    if options.limit is not None and options.limit < 1:
        raise ValueError(f"`limit` (--num) must be >= 1 (None: every input), got {options.limit}.")
    output_dir = check_output_dir(Path(output_dir), options.overwrite, list(inputs))
    skip_log = skip_log if skip_log is not None else SkipLog(strict=options.strict)

    unique_tasks, seen = [], set()
    for task in tasks:
        if options.limit is not None and len(unique_tasks) >= options.limit:
            break
        if task.id in seen:
            skip_log.add(
                InputProblem(
                    task.name,
                    "duplicate_id",
                    f"id {task.id!r} was already used by an earlier input; each sample id must be unique",
                )
            )
            continue
        seen.add(task.id)
        unique_tasks.append(task)
    if not unique_tasks:
        raise NoSamplesError(source, inputs, 0, skip_log)

    counts = {split: 0 for split in SPLITS}
    regions, subsets, degradations, severities, modes = Counter(), Counter(), Counter(), Counter(), Counter()
    atomic = AtomicOutputDir(output_dir, overwrite=options.overwrite)
    with atomic as work_dir:
        arrow_dir = work_dir / ".arrow"
        arrow_dir.mkdir()
        writers = {split: ArrowWriter(features=FEATURES, path=str(arrow_dir / f"{split}.arrow")) for split in SPLITS}
        results = _results(unique_tasks, process, options.num_workers)
        progress = tqdm(
            results, total=len(unique_tasks), desc=f"Building {source}", unit="sample", disable=not options.progress
        )
        try:
            for task, result in zip(unique_tasks, progress):
                if isinstance(result, InputProblem):
                    skip_log.add(result)
                    continue
                split = task.split or assign_split(task.group, options.seed, options.ratios)
                writers[split].write(FEATURES.encode_example(result.to_row(options.prompt)))
                counts[split] += 1
                regions[result.region] += 1
                subsets[result.subset] += 1
                degradations[result.degradation] += 1
                severities[f"{result.degradation}/{result.severity}"] += 1
                modes.update(mode for mode in result.original_modes if mode != "RGB")
        finally:
            progress.close()
            results.close()  # stops worker processes at once when a strict-mode error interrupts the loop
            for writer in writers.values():
                writer.finalize()
                writer.close()

        if not sum(counts.values()):
            raise NoSamplesError(source, inputs, len(unique_tasks), skip_log)
        splits = DatasetDict({split: Dataset.from_file(str(arrow_dir / f"{split}.arrow")) for split in SPLITS})
        # An empty split saved with the default sharding gets zero shards, which load_from_disk cannot read.
        splits.save_to_disk(str(work_dir), num_shards={split: 1 for split, count in counts.items() if count == 0})
        if options.parquet:
            (work_dir / "data").mkdir()
            for split, dataset in splits.items():
                dataset.to_parquet(str(work_dir / "data" / f"{split}-00000-of-00001.parquet"))
        del splits  # release the memory maps before the Arrow scratch files go
        shutil.rmtree(arrow_dir, ignore_errors=True)

        summary = {
            "source": source,
            "inputs": [str(Path(path)) for path in inputs],
            "seed": options.seed,
            "split_ratios": list(options.ratios),
            "num_samples": sum(counts.values()),
            "splits": counts,
            "regions": dict(sorted(regions.items())),
            "subsets": dict(sorted(subsets.items())),
            "degradations": dict(sorted(degradations.items())),
            "degradation_severities": dict(sorted(severities.items())),
            "converted_image_modes": dict(sorted(modes.items())),
            "skipped": len(skip_log),
            "skip_reasons": skip_log.counts(),
            **(extra_summary or {}),
        }
        skip_log.write_csv(work_dir / "skipped.csv")
        write_summary(work_dir / "summary.json", summary)
        (work_dir / "README.md").write_text(dataset_card(summary, options.parquet), encoding="utf-8")
        for split, count in counts.items():
            if count == 0:
                logger.warning("Split %r of the %s build is empty.", split, source)
        atomic.commit()

    dataset = load_from_disk(str(output_dir))
    if options.push_to_hub:
        push_dataset_to_hub(dataset, output_dir, options.push_to_hub, options.private)
    return BuildResult(dataset=dataset, output_dir=output_dir, skipped=list(skip_log.entries), summary=summary)


def push_dataset_to_hub(dataset: DatasetDict, output_dir: Path, repo_id: str, private: bool = False) -> None:
    """Pushes the card first and then the data, so that `push_to_hub` merges its `dataset_info` into our card
    instead of replacing the card."""
    card = DatasetCard((Path(output_dir) / "README.md").read_text(encoding="utf-8"))
    create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    card.push_to_hub(repo_id)
    dataset.push_to_hub(repo_id, private=private)


__all__ = ["BuildOptions", "BuildResult", "Task", "push_dataset_to_hub", "run_build"]
