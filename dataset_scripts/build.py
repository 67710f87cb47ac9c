"""One command from any plate source to a `datasets.DatasetDict` that `train_sft.py` and `eval.py` read.

    python -m dataset_scripts.build --source {ccpd,rodosol,mdlp,crops,synthetic} --input PATH --output DIR \
        [--num N] [--seed S] [--frames N] [--strict] [--overwrite] [--push_to_hub REPO]
    python -m dataset_scripts.build --config data.yaml   # the same options as YAML keys; the command line wins

`lpllm data ...` is the same command. `DIR` loads with `datasets.load_from_disk(DIR)`; beside the data it holds
`skipped.csv` (`file,reason` for every input left out), `summary.json` (counts per split, region, degradation and skip
reason), `README.md` (the dataset card) and `data/*.parquet`. Exit status: 0 when the build completed (bad inputs
skipped and listed), 1 when it stopped (strict mode met a bad input, the output exists without --overwrite or is
not a dataset we wrote, an input is missing, no input gave a sample), 2 for wrong arguments.
"""

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import datasets
from trl import TrlParser

from modeling_lpllm.processing_lpllm import DEFAULT_PROMPT

from .labels import LabelFileError
from .output import OutputExistsError
from .pipeline import BuildOptions, BuildResult
from .reports import NoSamplesError, StrictModeError
from .splits import DEFAULT_RATIOS, parse_ratios
from .synthetic.degrade import DEGRADATION_TYPES, SEVERITIES
from .synthetic.fonts import FontNotFoundError
from .synthetic.generate import SyntheticConfig, build_synthetic

SOURCES = ("ccpd", "rodosol", "mdlp", "crops", "synthetic")


@dataclass
class BuildArguments:
    """Arguments of `lpllm data` / `python -m dataset_scripts.build`."""

    source: Literal[SOURCES] = field(metadata={"help": "Kind of input."})
    output: str = field(metadata={"help": "Dataset folder to create."})
    input: str | None = field(
        default=None,
        metadata={"help": "Input folder (or label file for crops); required by every source but synthetic."},
    )
    num: int | None = field(
        default=None,
        metadata={"help": "synthetic: number of plates (None: 1000); other sources: use at most N inputs (None: all)."},
    )
    seed: int = field(default=0, metadata={"help": "Seeds the splits and synthetic generation."})
    frames: int | None = field(
        default=None,
        metadata={"help": "synthetic: frames per sample (None: 1); mdlp: degraded frames per group (None: 3)."},
    )
    strict: bool = field(default=False, metadata={"help": "Stop at the first bad input instead of skipping it."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output folder."})
    push_to_hub: str | None = field(
        default=None,
        metadata={"help": "Also push the dataset and its card to this Hub dataset repo.", "metavar": "REPO"},
    )
    private: bool = field(default=False, metadata={"help": "Create the Hub repo private."})
    workers: int = field(default=2, metadata={"help": "Worker processes (0: work in this process)."})
    splits: list[float] = field(
        default_factory=lambda: list(DEFAULT_RATIOS),
        metadata={"help": "train validation test fractions for inputs without a split of their own."},
    )
    prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": "Instruction text of the user turn."})
    parquet: bool = field(
        default=True, metadata={"help": "Write data/*.parquet beside the Arrow data (`--no-parquet`: off)."}
    )
    quiet: bool = field(default=False, metadata={"help": "No progress bar; warnings only."})
    labels: str | None = field(
        default=None, metadata={"help": "crops: label file (CSV/JSONL) to use instead of the folder's labels.csv."}
    )
    region: str | None = field(
        default=None,
        metadata={"help": "crops/mdlp: region code of labels that do not name one (None: crops infer it from the "
        "text; mdlp uses CN)."},
    )
    single_frames: bool = field(
        default=False, metadata={"help": "mdlp: also add every frame (degraded and clear) as a single-frame sample."}
    )
    regions: list[str] = field(
        default_factory=lambda: ["CN", "BR", "AR", "EU", "US"], metadata={"help": "synthetic: regions to render."}
    )
    layouts: list[str] | None = field(
        default=None,
        metadata={"help": "synthetic: layouts to render, e.g. `cn_blue br_mercosur` (overrides `regions`)."},
    )
    degradations: list[str] = field(
        default_factory=lambda: list(DEGRADATION_TYPES), metadata={"help": "synthetic: degradation types to draw from."}
    )
    severities: list[int] = field(
        default_factory=lambda: list(SEVERITIES), metadata={"help": "synthetic: severity levels to draw from."}
    )
    clean_fraction: float = field(default=0.1, metadata={"help": "synthetic: share of undegraded plates."})
    free_text_fraction: float = field(
        default=0.0,
        metadata={
            "help": "synthetic: share of one-row plates with 5-8 random letters and digits instead of their layout's "
            "pattern (vanity, old and foreign formats)."
        },
    )

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"`source` must be one of {', '.join(SOURCES)}, got {self.source!r}.")
        if self.input is None and self.source != "synthetic":
            raise ValueError(f"`input` is required for `source` {self.source}: the folder (or label file) to read.")
        try:
            self.splits = list(parse_ratios(self.splits))
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"`splits` must be three finite non-negative train validation test fractions, not all 0, got "
                f"{self.splits!r}."
            ) from error
        if self.num is not None and self.num < 1:
            raise ValueError(f"`num` must be >= 1 (None: every input), got {self.num}; a build of 0 samples is empty.")
        if self.frames is not None and self.frames < 1:
            raise ValueError(f"`frames` must be >= 1, got {self.frames}.")
        if self.seed < 0:
            raise ValueError(f"`seed` must be an integer >= 0 (numpy's seeds are), got {self.seed}.")
        if not self.prompt.strip():
            raise ValueError("`prompt` must be the instruction of the user turn; got an empty text.")
        if self.workers < 0:
            raise ValueError(f"`workers` must be >= 0 (0: work in this process), got {self.workers}.")
        if self.source == "synthetic":
            self.synthetic_config().resolved_layouts()  # a ValueError for an unknown region, layout or degradation

    def synthetic_config(self) -> SyntheticConfig:
        return SyntheticConfig(
            num=1000 if self.num is None else self.num,
            regions=tuple(code.upper() for code in self.regions),
            layouts=None if self.layouts is None else tuple(self.layouts),
            frames=1 if self.frames is None else self.frames,
            degradations=tuple(self.degradations),
            severities=tuple(self.severities),
            clean_fraction=self.clean_fraction,
            free_text_fraction=self.free_text_fraction,
        )


def parse_arguments(argv: list[str] | None = None) -> BuildArguments:
    """The command line (and any `--config` YAML file) as `BuildArguments`; a ValueError for a bad value."""
    parser = TrlParser(
        BuildArguments,
        description="Convert plate data (or generate synthetic plates) into an LP-LLM conversational dataset. "
        "Options also come from a YAML file: --config FILE.yaml.",
    )
    (args,) = parser.parse_args_and_config(argv)
    return args


def run(args: BuildArguments) -> BuildResult:
    """Runs the build `args` describe."""
    options = BuildOptions(
        seed=args.seed,
        strict=args.strict,
        overwrite=args.overwrite,
        num_workers=args.workers,
        ratios=tuple(args.splits),
        limit=args.num if args.source != "synthetic" else None,
        prompt=args.prompt,
        parquet=args.parquet,
        push_to_hub=args.push_to_hub,
        private=args.private,
        progress=not args.quiet,
    )
    output = Path(args.output)
    if args.source == "synthetic":
        return build_synthetic(output, args.synthetic_config(), options)
    source = Path(args.input)
    if args.source == "ccpd":
        from .ccpd import build_ccpd

        return build_ccpd(source, output, options)
    if args.source == "rodosol":
        from .rodosol import build_rodosol

        return build_rodosol(source, output, options)
    if args.source == "mdlp":
        from .mdlp import DEFAULT_FRAMES, build_mdlp

        frames = DEFAULT_FRAMES if args.frames is None else args.frames
        return build_mdlp(source, output, frames, args.single_frames, args.region or "CN", options)
    from .crops import build_crops

    labels = None if args.labels is None else Path(args.labels)
    return build_crops(source, output, labels, args.region, options)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_arguments(argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.quiet:
        datasets.disable_progress_bars()
    try:
        result = run(args)
    except (
        StrictModeError,
        NoSamplesError,
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
