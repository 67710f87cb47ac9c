"""`lpllm eval` / `python eval.py`: evaluates plate readers on one dataset into reports, tables and plots (usage in
eval.py's docstring and the README)."""

import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trl import TrlParser

from modeling_lpllm import DEFAULT_PLATE_CHARSET
from modeling_lpllm.plate_reading import check_prompt

from ..baselines.rapidocr import RAPIDOCR_READER, check_rapidocr_settings
from ..evaluation.attention_maps import ATTENTION_MAPS_FILE, attention_sheet, check_slot_attention
from ..evaluation.model_sources import check_model_reference
from ..evaluation.normalization import DEFAULT_SEPARATORS, PlateNormalizer, parse_region_maps
from ..evaluation.outputs import atomic_save_figure, prepare_output_dir
from ..evaluation.tables import ablation_table, comparison_table
from .reader_arguments import ReaderArguments, check_counts
from .recognizers import check_reader_options, load_recognizer, one_text_reader


COMPARISON_FILE = "comparison.md"
ABLATION_FILE = "ablation.md"
MODEL_MARKERS = ("config.json", "adapter_config.json", "baseline_config.json", "plate_config.yaml")

logger = logging.getLogger("eval")


@dataclass
class EvalArguments(ReaderArguments):
    """Arguments of `lpllm eval` / `python eval.py`: one of `model_name_or_path`, `compare` and `ablation_table` says
    what to evaluate; the rest say on what data, how labels are compared and how the reports are written."""

    output_dir: str = field(
        metadata={"help": "Where the report (or the table and one report per evaluated model) is written."}
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Evaluate one model: an LP-LLM / Qwen3-VL checkpoint dir or Hub id, a baseline dir, or "
        "`rapidocr` (RapidOCR off the shelf, with `pip install 'lpllm[baselines]'`)."},
    )
    compare: list[str] | None = field(
        default=None,
        metadata={"help": "The paper's Table 1: models (as for model_name_or_path) or report dirs (the results.json "
        "of a past run) side by side."},
    )
    ablation_table: list[str] | None = field(
        default=None, metadata={"help": "The paper's Table 2: models or report dirs, one per ablation (A, B, ...)."}
    )
    names: list[str] | None = field(
        default=None,
        metadata={"help": "Row names for `compare` / `ablation_table`, one per path (None: dir names / A, B, ...)."},
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A `dataset_scripts.build` output dir, a folder with labels.csv, or a CSV file. Needed to "
        "evaluate a model (not to tabulate saved reports)."},
    )
    split: str = field(default="test", metadata={"help": "Split of a saved DatasetDict."})
    overwrite: bool = field(
        default=False, metadata={"help": "Write into a non-empty output dir, replacing the report files."}
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Evaluate only the first N rows (None: all)."}
    )
    num_views: int | None = field(
        default=None,
        metadata={"help": "Read each plate from this many views of its crop (the crop and fixed corner jitters, "
        "averaged; a track read by late fusion spreads them over its frames). None: an LP-LLM checkpoint's "
        "processor's num_views, else 1. Give the same number to every model compared."},
    )
    prompt: str | None = field(
        default=None, metadata={"help": "Instruction for VLMs (None: the dataset's prompt, else DEFAULT_PROMPT)."}
    )
    answer_extraction: Literal["auto", "none", "plate"] = field(
        default="auto",
        metadata={"help": "'plate' keeps the longest plate-like run of a free-form answer; 'auto' does so for stock "
        "Qwen3-VL only."},
    )
    case_sensitive: bool = field(
        default=False, metadata={"help": "Label normalisation: do not upper-case labels and predictions."}
    )
    separators: str = field(
        default=DEFAULT_SEPARATORS,
        metadata={"help": "Label normalisation: characters removed from labels and predictions before comparing."},
    )
    keep_symbols: bool = field(
        default=False,
        metadata={"help": "Label normalisation: keep characters that are neither letters nor digits (emblems read as "
        "'=' or '*'); by default they are removed, as they are no part of a registration."},
    )
    region_map: list[str] | None = field(
        default=None,
        metadata={"help": "Label normalisation: extra region rules `REGION:A=B[,C=D]`, e.g. `CN:O=0,I=1 BR:O=0`."},
    )
    no_default_region_maps: bool = field(
        default=False, metadata={"help": "Label normalisation: drop the default US O->0 rule."}
    )
    charset: str = field(
        default=DEFAULT_PLATE_CHARSET,
        metadata={"help": "Allowed label characters; labels with others are excluded ('' = any)."},
    )
    latency_runs: int = field(default=20, metadata={"help": "Timed batch-1 reads (0 = skip latency)."})
    latency_warmup: int = field(default=3, metadata={"help": "Untimed batch-1 reads before the timed ones."})
    top_k_confusions: int = field(default=20, metadata={"help": "Character confusions listed in the report."})
    attention_maps: int = field(
        default=0,
        metadata={"help": f"Draw CMRM's slot attention maps (one per slot and their mean, over the crop) of the first "
        f"N evaluated plates, with their readings and labels, into {ATTENTION_MAPS_FILE} (an LP-LLM model with CMRM, "
        "given as model_name_or_path). 0: none."},
    )
    track_frames: list[int] | None = field(
        default=None,
        metadata={"help": "Also read every track (multi-frame sample) of at least max(k) frames from its first k "
        "frames, for each k, e.g. `1 3 5`, by the reader's `fusion`: exact match per k, overall and per degradation, "
        "in results.md, results.json (`track_frames`) and track_frames.png. None: not done."},
    )
    log_level: str = field(default="INFO", metadata={"help": "Logging level (DEBUG, INFO, WARNING, ...)."})

    def __post_init__(self):
        super().__post_init__()
        modes = [name for name in ("model_name_or_path", "compare", "ablation_table") if getattr(self, name)]
        if len(modes) != 1:
            raise ValueError(
                "Give exactly one of `model_name_or_path` (one model), `compare` (Table 1) or `ablation_table` "
                f"(Table 2); got {', '.join(modes) if modes else 'none'}."
            )
        if self.model_name_or_path and not self.dataset_name:
            raise ValueError("`dataset_name` is required to evaluate a model: a dataset dir, crop folder or CSV file.")
        if self.names is not None:
            paths = self.compare or self.ablation_table
            if paths is None:
                raise ValueError("`names` names the rows of `compare` / `ablation_table`: give one of them.")
            if len(self.names) != len(paths):
                raise ValueError(f"`names` has {len(self.names)} entries for {len(paths)} paths: give one per path.")
        check_counts(self, ("num_views", "max_samples"))
        check_prompt(self.prompt)
        for name in ("latency_runs", "latency_warmup", "top_k_confusions", "attention_maps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}.")
        if self.track_frames is not None:
            frames = self.track_frames
            if not frames or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in frames):
                raise ValueError(f"`track_frames` must be whole numbers >= 1 (frames per track), got {frames!r}.")
            if len(set(frames)) != len(frames):
                raise ValueError(f"`track_frames` names a frame count twice: {frames!r}.")
            self.track_frames = sorted(frames)
        if not isinstance(self.split, str) or not self.split.strip():
            raise ValueError(f"`split` must name a split of the dataset (e.g. test); got {self.split!r}.")
        # Local paths are checked as paths here, before any output is written or any Hub lookup is made.
        if self.dataset_name is not None and not Path(self.dataset_name).expanduser().exists():
            raise FileNotFoundError(
                f"`dataset_name` {self.dataset_name!r}: no such file or folder ({Path(self.dataset_name).resolve()}); "
                "expected a `dataset_scripts.build` output folder, a folder with labels.csv, or a CSV file."
            )
        readers = [self.model_name_or_path] if self.model_name_or_path else self.compare or self.ablation_table
        if RAPIDOCR_READER in readers:
            check_rapidocr_settings(self.num_views)
        for path in readers:
            check_reader_options(path, self.top_k, self.constrain, self.fusion, self.num_beams)
        if self.model_name_or_path:
            check_model_reference(self.model_name_or_path, "model_name_or_path")
        if self.attention_maps:
            if not self.model_name_or_path:
                raise ValueError(
                    "`attention_maps` draws one model's slot attention: give the model as `model_name_or_path`, not in "
                    "`compare` / `ablation_table`."
                )
            check_attention_maps_reader(self.model_name_or_path)
        for name in ("compare", "ablation_table"):
            for position, path in enumerate(getattr(self, name) or []):
                check_model_reference(path, f"{name}[{position}]")
        if not isinstance(logging.getLevelName(str(self.log_level).upper()), int):
            raise ValueError(f"`log_level` must be a logging level such as INFO or WARNING, got {self.log_level!r}.")
        try:
            parse_region_maps(self.region_map)
        except ValueError as error:
            raise ValueError(f"`region_map`: {error}") from error


def check_attention_maps_reader(path: str) -> None:
    """Refuses, before it loads, a reader known to have no CMRM slots to draw: RapidOCR, a CTC baseline, a
    fast-plate-ocr export, or a local checkpoint whose config is not LP-LLM's or has CMRM off. A Hub model is checked
    once loaded (`attention_maps.check_slot_attention`).

    Raises:
        ValueError: naming `attention_maps`, the model and what it is.
    """
    reader = one_text_reader(path)
    if reader is not None:
        raise ValueError(
            f"`attention_maps` draws CMRM's slot attention, and {path} is {reader}, which has none: give an LP-LLM "
            "model with CMRM."
        )
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no local config to read: the loader reports what is wrong, the loaded model is checked
    if config.get("model_type") != "lpllm":
        problem = f"is a {config.get('model_type')!r} model, not LP-LLM"
    elif not config.get("cmrm_enabled", True):
        problem = "has CMRM off (cmrm_enabled: false)"
    else:
        return
    raise ValueError(
        f"`attention_maps` draws CMRM's slot attention, and {path} {problem}: give an LP-LLM model with CMRM."
    )


def parse_arguments(argv: list[str] | None = None) -> EvalArguments:
    """The command line (and any `--config` YAML file) as `EvalArguments`; a ValueError for a bad combination."""
    description = __doc__.split("\n\n")[0] + " Options also come from a YAML file: --config FILE.yaml."
    (args,) = TrlParser(EvalArguments, description=description).parse_args_and_config(argv)
    return args


def _normalizer(args: EvalArguments) -> PlateNormalizer:
    return PlateNormalizer(
        uppercase=not args.case_sensitive,
        separators=args.separators,
        letters_and_digits_only=not args.keep_symbols,
        region_maps=parse_region_maps(args.region_map, use_defaults=not args.no_default_region_maps),
    )


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in MODEL_MARKERS)


def _saved_results(path: Path) -> dict | None:
    """The `results.json` of a report directory, or None when `path` is a model to evaluate."""
    results_file = path / "results.json"
    if _is_model_dir(path) or not results_file.is_file():
        return None
    try:
        results = json.loads(results_file.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{results_file} is not valid JSON: {error}") from error
    missing = [key for key in ("accuracy", "cer") if key not in results]
    if missing:
        raise ValueError(f"{results_file} lacks {missing}: it is not an eval.py report.")
    return results


def _slug(path: str, taken: set) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path.rstrip("/")).name or "model") or "model"
    slug, index = base, 2
    while slug in taken:
        slug, index = f"{base}_{index}", index + 1
    taken.add(slug)
    return slug


class _Evaluator:
    """Loads the data and the metric once and evaluates any number of models with them, the reading shared by the
    processes of `state` (`lpllm.evaluation.sharding`)."""

    def __init__(self, args, state):
        from lpllm.evaluation.evaluation import EvalSettings, load_plate_metric

        self.args = args
        self.state = state
        self.normalizer = _normalizer(args)
        self.charset = args.charset or None
        self.metric = load_plate_metric()
        self.settings = EvalSettings(
            batch_size=args.batch_size,
            latency_runs=args.latency_runs,
            latency_warmup=args.latency_warmup,
            top_k_confusions=args.top_k_confusions,
            track_frames=args.track_frames,
        )
        self._data = None

    @property
    def data(self):
        from lpllm.evaluation.data import load_eval_data

        if self._data is None:
            if not self.args.dataset_name:
                raise ValueError(
                    "`dataset_name` is required to evaluate a model: a dataset dir, crop folder or CSV file."
                )
            self._data = load_eval_data(
                self.args.dataset_name, self.args.split, self.normalizer, self.charset, self.args.max_samples
            )
        return self._data

    def evaluate(self, model_path: str, output_dir: Path) -> dict:
        from lpllm.evaluation.evaluation import evaluate_to_report, track_indices
        from lpllm.evaluation.sharding import reading_device

        data = self.data  # fail on a bad dataset before spending time loading a model
        if self.args.track_frames:
            track_indices(data.samples, self.args.track_frames)
        recognizer = load_recognizer(
            model_path,
            device=reading_device(self.state, self.args.device),
            dtype=self.args.dtype,
            max_new_tokens=self.args.max_new_tokens,
            prompt=self.args.prompt,
            answer_extraction=self.args.answer_extraction,
            charset=self.args.charset or DEFAULT_PLATE_CHARSET,
            num_views=self.args.num_views,
            top_k=self.args.top_k,
            num_beams=self.args.num_beams,
            region=self.args.region,
            constrain=self.args.constrain,
            fusion=self.args.fusion,
            trust_remote_code=self.args.trust_remote_code,
        )
        if self.args.attention_maps:
            check_slot_attention(recognizer.model)  # a Hub model's config is known only now: refused before reading
        results = evaluate_to_report(
            recognizer, data, output_dir, self.metric, self.normalizer, self.settings, self.charset,
            command=self.args.command, state=self.state,
        )
        if self.args.attention_maps and self.state.is_main_process:
            samples = data.samples[: self.args.attention_maps]
            sheet_file = Path(output_dir) / ATTENTION_MAPS_FILE
            atomic_save_figure(attention_sheet(recognizer, samples, self.args.batch_size), sheet_file, dpi=110)
            logger.info("Slot attention maps of %d plates written to %s", len(samples), sheet_file)
        return results


def _run_table(args, state, paths: list[str], output_dir: Path, render, table_file: str) -> str:
    from lpllm.evaluation.outputs import atomic_write_json, atomic_write_text

    evaluator, taken, results_list = None, set(), []
    for path in paths:
        saved = None if path == RAPIDOCR_READER else _saved_results(Path(path))
        if saved is not None:
            logger.info("Using the saved results of %s", path)
            results_list.append(saved)
            continue
        evaluator = evaluator or _Evaluator(args, state)
        results_list.append(evaluator.evaluate(path, output_dir / _slug(path, taken)))
    evaluated_on = {
        ((r.get("dataset") or {}).get("path"), (r.get("dataset") or {}).get("split")) for r in results_list
    }
    if len(evaluated_on) > 1:
        logger.warning(
            "The rows come from different datasets/splits %s: they are not side by side.",
            sorted(map(str, evaluated_on)),
        )
    table = render(results_list, args.names)
    if not state.is_main_process:
        return table
    atomic_write_text(output_dir / table_file, table)
    atomic_write_json(
        output_dir / (Path(table_file).stem + ".json"),
        [
            {
                key: results.get(key)
                for key in ("model", "dataset", "accuracy", "cer", "ned", "calibration", "efficiency")
            }
            for results in results_list
        ],
    )
    return table


def main(argv: list[str] | None = None) -> dict | str:
    """Runs the command line; returns the results of a single evaluation, or the rendered table. Under a launcher
    (`accelerate launch -m lpllm.cli eval ...`) the processes share the reading and the main process writes."""
    from lpllm.evaluation.sharding import end_processes, process_state

    args = parse_arguments(argv)
    args.command = ["eval.py", *(sys.argv[1:] if argv is None else argv)]
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    state = process_state(args.device)
    output_dir = prepare_output_dir(args.output_dir, overwrite=args.overwrite)
    state.wait_for_everyone()  # every process has checked the output dir before the main process writes into it
    if args.model_name_or_path:
        results = _Evaluator(args, state).evaluate(args.model_name_or_path, output_dir)
        if state.is_main_process:
            print(comparison_table([results]))
            print(f"Report written to {output_dir}")
        end_processes(state)
        return results
    if args.compare:
        table = _run_table(args, state, args.compare, output_dir, comparison_table, COMPARISON_FILE)
    else:
        table = _run_table(args, state, args.ablation_table, output_dir, ablation_table, ABLATION_FILE)
    if state.is_main_process:
        print(table)
    end_processes(state)
    return table


if __name__ == "__main__":
    main()
