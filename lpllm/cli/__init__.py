"""The `lpllm` command: one entry point whose subcommands are the project's scripts.

    lpllm data ...                  # = python -m dataset_scripts.build ...
    lpllm train ...                 # = python train_sft.py ...
    lpllm eval ...                  # = python eval.py ...
    lpllm read PATH... --model M    # the plates in image files, folders, glob patterns
    lpllm calibrate ...             # fit a saved model's score temperature and abstain threshold
    lpllm demo --model M            # a page to try a model in the browser (pip install "lpllm[demo]")
    lpllm train-baseline ...        # = python -m lpllm.baselines.train ...
    lpllm export-fast-plate-ocr ... # = python -m lpllm.baselines.fast_plate_ocr ...
    lpllm convert-ppocr ...         # = python -m lpllm.training.ppocr_conversion ...

`lpllm COMMAND --help` lists every option of COMMAND with its default. Every command parses its options the TRL way
(argument dataclasses, `trl.TrlParser`), so `--config FILE.yaml` gives any of them as YAML keys; options given on
the command line win. `python -m lpllm.cli COMMAND ...` runs the same, e.g. under `accelerate launch -m`.
"""

import importlib
import sys


# command -> (module, what it does); modules are imported only when their command runs, so `lpllm --help` is instant.
COMMANDS = {
    "data": ("dataset_scripts.build", "build a plate dataset (datasets.DatasetDict) from any source"),
    "train": ("lpllm.training.sft", "fine-tune LP-LLM with TRL SFT + PEFT (YAML recipes in recipes/)"),
    "eval": ("lpllm.cli.evaluate", "evaluate readers on a dataset: reports, comparison tables, plots"),
    "read": ("lpllm.cli.read", "read the plates in image files, folders and glob patterns (text, JSON or CSV)"),
    "calibrate": ("lpllm.cli.calibrate", "fit a saved model's score temperature and abstain threshold"),
    "demo": ("lpllm.cli.demo", "a page to try a model in the browser: reading, scores, CMRM attention (Gradio)"),
    "train-baseline": ("lpllm.baselines.train", "train a CRNN-CTC or LPRNet reference reader"),
    "export-fast-plate-ocr": ("lpllm.baselines.fast_plate_ocr", "export a dataset for fast-plate-ocr's own CLI"),
    "convert-ppocr": ("lpllm.training.ppocr_conversion", "PP-OCR's pretrained recognizer as vision-encoder weights"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: lpllm COMMAND [--config FILE.yaml] [OPTIONS]   (lpllm COMMAND --help: its options)", ""]
    lines.append("commands:")
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None):
    """Runs `lpllm COMMAND ...`; returns what the command's `main` returns (an exit code for the console script)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"lpllm: unknown command {command!r}.\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    # The commands' parsers name the program after sys.argv[0], so their usage and errors read `lpllm COMMAND`.
    program = sys.argv[:1]
    sys.argv[:1] = [f"lpllm {command}"]
    try:
        return module.main(rest)
    finally:
        sys.argv[:1] = program


def console_main() -> int:
    """The console script: exit status 0 unless the command returned a non-zero int."""
    result = main()
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
