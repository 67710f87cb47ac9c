"""`lpllm eval` / `python eval.py`: evaluates plate readers on one dataset into reports, tables and plots (usage in
eval.py's docstring and the README)."""

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from modeling_lpllm import DEFAULT_PLATE_CHARSET

from ..evaluation import PLATE_METRICS_SCRIPT


COMPARISON_FILE = "comparison.md"
ABLATION_FILE = "ablation.md"
MODEL_MARKERS = ("config.json", "adapter_config.json", "baseline_config.json", "plate_config.yaml")

logger = logging.getLogger("eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--model_name_or_path", help="LP-LLM / Qwen3-VL checkpoint dir or Hub id, or a baseline dir.")
    mode.add_argument("--compare", nargs="+", metavar="PATH", help="Models or report dirs for Table 1.")
    mode.add_argument(
        "--ablation_table", nargs="+", metavar="PATH", help="Models or report dirs for Table 2 (A, B, ...)."
    )
    parser.add_argument(
        "--names", nargs="+", help="Row names for --compare / --ablation_table (default: dir names / A, B, ...)."
    )
    parser.add_argument(
        "--dataset_name", help="dataset_scripts.build output dir, folder with labels.csv, or CSV file."
    )
    parser.add_argument("--split", default="test", help="Split of a saved DatasetDict (default: test).")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument(
        "--overwrite", action="store_true", help="Write into a non-empty output dir, replacing reports."
    )
    parser.add_argument("--max_samples", type=int, help="Evaluate only the first N rows.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu).")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--max_new_tokens", type=int, default=16)
    parser.add_argument(
        "--num_views",
        type=int,
        help="Read each plate from this many views of its crop (the crop and fixed corner jitters, averaged; "
        "default: an LP-LLM checkpoint's processor's num_views, else 1). Give the same number to every model compared.",
    )
    parser.add_argument("--prompt", help="Instruction for VLMs (default: the dataset's prompt, else DEFAULT_PROMPT).")
    parser.add_argument(
        "--answer_extraction",
        default="auto",
        choices=["auto", "none", "plate"],
        help="'plate' keeps the longest plate-like run of a free-form answer; 'auto' does so for stock Qwen3-VL only.",
    )
    norm = parser.add_argument_group("label normalisation (applied to labels and predictions alike)")
    norm.add_argument("--case_sensitive", action="store_true", help="Do not upper-case before comparing.")
    norm.add_argument(
        "--separators", default=None, help="Characters removed before comparing (default: ' -_.·•:/|\\t')."
    )
    norm.add_argument(
        "--region_map", action="append", metavar="REGION:A=B[,C=D]", help="Extra region rule, e.g. CN:O=0,I=1."
    )
    norm.add_argument("--no_default_region_maps", action="store_true", help="Drop the default US O->0 rule.")
    norm.add_argument(
        "--charset",
        default=DEFAULT_PLATE_CHARSET,
        help="Allowed label characters; labels with others are excluded ('' = any).",
    )
    bench = parser.add_argument_group("efficiency")
    bench.add_argument("--latency_runs", type=int, default=20, help="Timed batch-1 reads (0 = skip latency).")
    bench.add_argument("--latency_warmup", type=int, default=3)
    parser.add_argument("--top_k_confusions", type=int, default=20)
    parser.add_argument("--log_level", default="INFO")
    return parser


def _normalizer(args):
    from lpllm.evaluation.normalization import DEFAULT_SEPARATORS, PlateNormalizer, parse_region_maps

    return PlateNormalizer(
        uppercase=not args.case_sensitive,
        separators=DEFAULT_SEPARATORS if args.separators is None else args.separators,
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
    """Loads the data and the metric once and evaluates any number of models with them."""

    def __init__(self, args):
        import evaluate

        from lpllm.evaluation.evaluation import EvalSettings

        self.args = args
        self.normalizer = _normalizer(args)
        self.charset = args.charset or None
        self.metric = evaluate.load(str(PLATE_METRICS_SCRIPT))
        self.settings = EvalSettings(
            batch_size=args.batch_size,
            latency_runs=args.latency_runs,
            latency_warmup=args.latency_warmup,
            top_k_confusions=args.top_k_confusions,
        )
        self._data = None

    @property
    def data(self):
        from lpllm.evaluation.data import load_eval_data

        if self._data is None:
            if not self.args.dataset_name:
                raise ValueError("--dataset_name is required to evaluate a model.")
            self._data = load_eval_data(
                self.args.dataset_name, self.args.split, self.normalizer, self.charset, self.args.max_samples
            )
        return self._data

    def evaluate(self, model_path: str, output_dir: Path) -> dict:
        from lpllm.evaluation.evaluation import evaluate_recognizer
        from .recognizers import load_recognizer
        from lpllm.evaluation.report import write_report

        data = self.data  # fail on a bad dataset before spending time loading a model
        recognizer = load_recognizer(
            model_path,
            device=self.args.device,
            dtype=self.args.dtype,
            max_new_tokens=self.args.max_new_tokens,
            prompt=self.args.prompt,
            answer_extraction=self.args.answer_extraction,
            charset=self.args.charset or DEFAULT_PLATE_CHARSET,
            num_views=self.args.num_views,
        )
        results, rows = evaluate_recognizer(
            recognizer, data, self.metric, self.normalizer, self.settings, self.charset
        )
        results["command"] = self.args.command
        write_report(output_dir, results, rows)
        return results


def _run_table(args, paths: list[str], output_dir: Path, render, table_file: str) -> str:
    from lpllm.evaluation.outputs import atomic_write_json, atomic_write_text

    if args.names and len(args.names) != len(paths):
        raise ValueError(f"--names has {len(args.names)} entries for {len(paths)} paths.")
    evaluator, taken, results_list = None, set(), []
    for path in paths:
        saved = _saved_results(Path(path))
        if saved is not None:
            logger.info("Using the saved results of %s", path)
            results_list.append(saved)
            continue
        evaluator = evaluator or _Evaluator(args)
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
    atomic_write_text(output_dir / table_file, table)
    atomic_write_json(
        output_dir / (Path(table_file).stem + ".json"),
        [
            {key: results.get(key) for key in ("model", "dataset", "accuracy", "cer", "ned", "efficiency")}
            for results in results_list
        ],
    )
    return table


def main(argv: list[str] | None = None) -> dict | str:
    """Runs the command line; returns the results of a single evaluation, or the rendered table."""
    args = build_parser().parse_args(argv)
    args.command = ["eval.py", *(sys.argv[1:] if argv is None else argv)]
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    from lpllm.evaluation.outputs import prepare_output_dir
    from lpllm.evaluation.tables import ablation_table, comparison_table

    for option in ("batch_size", "max_new_tokens", "num_views"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise SystemExit(f"--{option} must be at least 1.")
    output_dir = prepare_output_dir(args.output_dir, overwrite=args.overwrite)
    if args.model_name_or_path:
        results = _Evaluator(args).evaluate(args.model_name_or_path, output_dir)
        print(comparison_table([results]))
        print(f"Report written to {output_dir}")
        return results
    if args.compare:
        table = _run_table(args, args.compare, output_dir, comparison_table, COMPARISON_FILE)
    else:
        table = _run_table(args, args.ablation_table, output_dir, ablation_table, ABLATION_FILE)
    print(table)
    return table


if __name__ == "__main__":
    main()
