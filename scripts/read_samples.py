"""Reads a few test plates with `pipeline("image-to-text")`, as a user would, and saves them with their readings.

    python scripts/read_samples.py --model runs/demo/lpllm/final --dataset_name data/demo_latin20k --num 8 \
        --output_dir runs/demo/samples
"""

from dataclasses import dataclass, field
from pathlib import Path

import datasets
from PIL import Image, ImageDraw
from transformers import pipeline
from trl import TrlParser

from lpllm.evaluation.model_sources import check_model_reference, remote_code_allowed


@dataclass
class ReadSamplesArguments:
    """Arguments of `scripts/read_samples.py`."""

    model: str = field(metadata={"help": "A saved LP-LLM model directory (OUT/final)."})
    dataset_name: str = field(metadata={"help": "A dataset_scripts.build output directory."})
    output_dir: str = field(metadata={"help": "Where the sheet of readings (PNG) is written."})
    split: str = field(default="test", metadata={"help": "Split the plates are taken from."})
    num: int = field(default=8, metadata={"help": "Plates read (the split's first ones)."})
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run the Python code a model ships with (e.g. a Hub LP-LLM). An LP-LLM folder this project "
        "wrote loads without it."},
    )

    def __post_init__(self):
        if isinstance(self.num, bool) or not isinstance(self.num, int) or self.num < 1:
            raise ValueError(f"`num` must be an integer >= 1, got {self.num!r}.")
        check_model_reference(self.model, "model")
        if not Path(self.dataset_name).expanduser().is_dir():
            raise FileNotFoundError(
                f"`dataset_name` {self.dataset_name!r}: no such folder; expected a dataset_scripts.build output folder."
            )


def main(argv=None):
    (args,) = TrlParser(ReadSamplesArguments, description=__doc__.split("\n\n")[0]).parse_args_and_config(argv)
    trust_remote_code = remote_code_allowed(args.model, args.trust_remote_code)
    splits = datasets.load_from_disk(args.dataset_name)
    if args.split not in splits:
        raise ValueError(f"`split` {args.split!r}: {args.dataset_name} has the splits {sorted(splits)}.")
    rows = splits[args.split]
    if len(rows) == 0:
        raise ValueError(f"`split` {args.split!r} of {args.dataset_name} has no rows: there is no plate to read.")
    rows = rows.select(range(min(args.num, len(rows))))
    reader = pipeline("image-to-text", model=args.model, trust_remote_code=trust_remote_code)
    images = [row["images"][0] for row in rows]
    readings = [result[0]["generated_text"] for result in reader(images, batch_size=args.num)]

    sheet = Image.new("RGB", (320, 60 * len(images)), "white")
    draw = ImageDraw.Draw(sheet)
    print(f"{'label':<12} {'reading':<12} ok")
    for index, (row, image, reading) in enumerate(zip(rows, images, readings)):
        ok = reading == row["text"]
        print(f"{row['text']:<12} {reading:<12} {'yes' if ok else 'NO'}")
        thumbnail = image.convert("RGB")
        thumbnail.thumbnail((150, 50))
        sheet.paste(thumbnail, (5, 60 * index + 5))
        draw.text((165, 60 * index + 22), f"{reading}  ({'ok' if ok else 'label ' + row['text']})",
                  fill=(0, 120, 0) if ok else (200, 0, 0))
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    sheet_path = output_dir / "pipeline_readings.png"
    partial = sheet_path.with_suffix(".tmp.png")
    sheet.save(partial)
    partial.replace(sheet_path)
    print(f"sheet of readings: {sheet_path}")


if __name__ == "__main__":
    main()
