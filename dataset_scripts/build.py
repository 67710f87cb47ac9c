"""One command from any plate source to a `datasets.DatasetDict` that `train_sft.py` and `eval.py` read.

    python -m dataset_scripts.build --source {ccpd,rodosol,mdlp,crops,synthetic} --input PATH --output DIR \
        [--num N] [--seed S] [--frames N] [--strict] [--overwrite] [--push_to_hub REPO]

`DIR` loads with `datasets.load_from_disk(DIR)`; beside the data it holds `skipped.csv` (`file,reason` for every
input left out), `summary.json` (counts per split, region, degradation and skip reason), `README.md` (the
dataset card) and `data/*.parquet`. Exit status: 0 when the build completed (bad inputs skipped and listed), 1 when
it stopped (strict mode met a bad input, the output exists without --overwrite, an input is missing), 2 for
wrong arguments.
"""

import argparse
import logging
import sys
from pathlib import Path

import datasets

from modeling_lpllm.processing_lpllm import DEFAULT_PROMPT

from .labels import LabelFileError
from .output import OutputExistsError
from .pipeline import BuildOptions, BuildResult
from .reports import StrictModeError
from .splits import parse_ratios
from .synthetic.degrade import DEGRADATION_TYPES
from .synthetic.fonts import FontNotFoundError

SOURCES = ("ccpd", "rodosol", "mdlp", "crops", "synthetic")


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataset_scripts.build",
        description="Convert plate data (or generate synthetic plates) into an LP-LLM conversational dataset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--source", required=True, choices=SOURCES, help="Kind of input.")
    parser.add_argument("--input", type=Path, help="Input folder (or label file for crops); not used by synthetic.")
    parser.add_argument("--output", type=Path, required=True, help="Dataset folder to create.")
    parser.add_argument(
        "--num",
        type=int,
        default=None,
        help="synthetic: number of plates (default 1000); other sources: use at most N inputs.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seeds the splits and synthetic generation.")
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help="synthetic: frames per sample (default 1); mdlp: degraded frames per group (default 3).",
    )
    parser.add_argument("--strict", action="store_true", help="Stop at the first bad input instead of skipping it.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output folder.")
    parser.add_argument(
        "--push_to_hub",
        "--push-to-hub",
        dest="push_to_hub",
        metavar="REPO",
        help="Also push the dataset and its card to this Hub dataset repo.",
    )
    parser.add_argument("--private", action="store_true", help="Create the Hub repo private.")
    parser.add_argument("--workers", type=int, default=2, help="Worker processes (0: work in this process).")
    parser.add_argument(
        "--splits",
        default="0.9,0.05,0.05",
        help="train,validation,test fractions for inputs without a split of their own.",
    )
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="Instruction text of the user turn.")
    parser.add_argument("--no-parquet", dest="parquet", action="store_false", help="Do not also write data/*.parquet.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar; warnings only.")
    crops = parser.add_argument_group("crops / mdlp")
    crops.add_argument(
        "--labels", type=Path, help="crops: label file (CSV/JSONL) to use instead of the folder's labels.csv."
    )
    crops.add_argument(
        "--region",
        help="crops/mdlp: region code of labels that do not name one (crops: inferred from the text; mdlp: CN).",
    )
    crops.add_argument(
        "--single-frames",
        action="store_true",
        help="mdlp: also add every frame (degraded and clear) as a single-frame sample.",
    )
    synthetic = parser.add_argument_group("synthetic")
    synthetic.add_argument(
        "--regions", type=_csv_list, default=("CN", "BR", "AR", "EU", "US"), help="Regions to render, comma-separated."
    )
    synthetic.add_argument(
        "--layouts",
        type=_csv_list,
        default=None,
        help="Layouts to render (overrides --regions), e.g. cn_blue,br_mercosur.",
    )
    synthetic.add_argument(
        "--degradations", type=_csv_list, default=DEGRADATION_TYPES, help="Degradation types to draw from."
    )
    synthetic.add_argument(
        "--severities",
        type=lambda text: tuple(int(value) for value in _csv_list(text)),
        default=(1, 2, 3, 4, 5),
        help="Severity levels to draw from.",
    )
    synthetic.add_argument("--clean-fraction", type=float, default=0.1, help="Share of undegraded plates.")
    return parser


def run(args: argparse.Namespace) -> BuildResult:
    """Runs the build `args` describe (see `build_parser`)."""
    options = BuildOptions(
        seed=args.seed,
        strict=args.strict,
        overwrite=args.overwrite,
        num_workers=args.workers,
        ratios=parse_ratios(args.splits),
        limit=args.num if args.source != "synthetic" else None,
        prompt=args.prompt,
        parquet=args.parquet,
        push_to_hub=args.push_to_hub,
        private=args.private,
        progress=not args.quiet,
    )
    if args.source == "synthetic":
        from .synthetic.generate import SyntheticConfig, build_synthetic

        config = SyntheticConfig(
            num=1000 if args.num is None else args.num,
            regions=tuple(code.upper() for code in args.regions),
            layouts=args.layouts,
            frames=args.frames or 1,
            degradations=args.degradations,
            severities=args.severities,
            clean_fraction=args.clean_fraction,
        )
        return build_synthetic(args.output, config, options)
    if args.input is None:
        raise ValueError(f"--input is required for --source {args.source}.")
    if args.source == "ccpd":
        from .ccpd import build_ccpd

        return build_ccpd(args.input, args.output, options)
    if args.source == "rodosol":
        from .rodosol import build_rodosol

        return build_rodosol(args.input, args.output, options)
    if args.source == "mdlp":
        from .mdlp import DEFAULT_FRAMES, build_mdlp

        return build_mdlp(
            args.input, args.output, args.frames or DEFAULT_FRAMES, args.single_frames, args.region or "CN", options
        )
    from .crops import build_crops

    return build_crops(args.input, args.output, args.labels, args.region, options)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.quiet:
        datasets.disable_progress_bars()
    try:
        result = run(args)
    except (
        StrictModeError,
        OutputExistsError,
        FileNotFoundError,
        LabelFileError,
        FontNotFoundError,
        ValueError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    summary = result.summary
    splits = ", ".join(f"{split} {count}" for split, count in summary["splits"].items())
    print(f"Wrote {summary['num_samples']} samples ({splits}) to {result.output_dir}")
    if summary["skipped"]:
        reasons = ", ".join(f"{code} {count}" for code, count in summary["skip_reasons"].items())
        print(f"Skipped {summary['skipped']} input(s) ({reasons}); see {result.output_dir / 'skipped.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
