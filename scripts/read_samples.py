"""Reads a few test plates with `pipeline("image-to-text")`, as a user would, and saves them with their readings.

    python scripts/read_samples.py --model runs/demo/lpllm/final --dataset_name data/demo_latin20k --num 8 \
        --output_dir runs/demo/samples
"""

import argparse
from pathlib import Path

import datasets
from PIL import Image, ImageDraw
from transformers import pipeline


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A saved LP-LLM model directory (OUT/final).")
    parser.add_argument("--dataset_name", required=True, help="A dataset_scripts.build output directory.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--output_dir", required=True, help="Where the sheet of readings (PNG) is written.")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    rows = datasets.load_from_disk(args.dataset_name)[args.split]
    rows = rows.select(range(min(args.num, len(rows))))
    reader = pipeline("image-to-text", model=args.model, trust_remote_code=True)
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
