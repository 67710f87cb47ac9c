"""At what image shape does PP-OCRv6 small's pretrained recognizer read plates? Chooses `ppocr_image_width` and the
processor's `image_size` for `vision_encoder: ppocr` on training crops (`../shared/realtrain`), never on the
evaluation sets.

Each crop is resized as the processor resizes it (bicubic, to `image_size`), then bilinearly to 48 pixels high and
the encoder width, as `modeling_lpllm/ppocr_vision.py` does, and read by the converted recognizer with its own CTC
head, untrained; exact match over letters and digits (eval.py's normalisation).

    python benchmarks/ppocr_image_shape.py --sets taiwan_tw uzbekistan_uz --output results/ppocr_image_shape.json
"""

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from tqdm.auto import tqdm
from trl import TrlParser

from lpllm.evaluation.normalization import PlateNormalizer
from lpllm.training.ppocr_conversion import convert, rapidocr_recognizer_path
from modeling_lpllm.ppocr_recognizer import ctc_greedy_decode


# (processor height, processor width, encoder width): the crop stretched into the strip the processor makes, then
# brought back to the width the encoder reads at 48 pixels high.
SHAPES = [(32, 672, 1008), (32, 256, 384), (32, 768, 192), (32, 768, 240), (32, 768, 144), (64, 256, 192)]


@dataclass
class ShapeArguments:
    realtrain_dir: str = field(default="../shared/realtrain", metadata={"help": "Folder of labelled training sets."})
    sets: list[str] = field(default_factory=lambda: ["taiwan_tw", "uzbekistan_uz"], metadata={"help": "Sets to read."})
    max_crops: int = field(default=500, metadata={"help": "Crops per set (the first ones of its labels.csv)."})
    output: str | None = field(default=None, metadata={"help": "JSON file for the table."})


def read_at(recognizer, characters, image: Image.Image, height: int, width: int, encoder_width: int) -> str:
    strip = np.asarray(image.convert("RGB").resize((width, height), Image.BICUBIC), dtype=np.float32)
    pixels = torch.from_numpy(strip[:, :, ::-1].copy()).permute(2, 0, 1)[None] / 255  # BGR, as PP-OCR reads
    pixels = (pixels - 0.5) / 0.5
    pixels = F.interpolate(pixels, size=(48, encoder_width), mode="bilinear", align_corners=False, antialias=True)
    with torch.inference_mode():
        return ctc_greedy_decode(recognizer(pixels), characters)[0]


def main(argv=None) -> dict:
    (args,) = TrlParser(ShapeArguments).parse_args_and_config(argv)
    recognizer, characters = convert(rapidocr_recognizer_path())
    normalize = PlateNormalizer()
    table = {}
    for name in args.sets:
        folder = Path(args.realtrain_dir) / name
        with open(folder / "labels.csv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))[: args.max_crops]
        crops = [(Image.open(folder / row["file"]), normalize(row["text"])) for row in rows]
        for height, width, encoder_width in SHAPES:
            key = f"{height}x{width} -> 48x{encoder_width}"
            right = sum(
                normalize(read_at(recognizer, characters, image, height, width, encoder_width)) == label
                for image, label in tqdm(crops, desc=f"{name} {key}", leave=False)
            )
            table.setdefault(key, {})[name] = round(100 * right / len(crops), 1)
    print("| processor -> encoder | " + " | ".join(args.sets) + " |")
    print("| --- |" + " --- |" * len(args.sets))
    for key, row in table.items():
        print(f"| {key} | " + " | ".join(str(row[name]) for name in args.sets) + " |")
    if args.output:
        Path(args.output).write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    return table


if __name__ == "__main__":
    main()
