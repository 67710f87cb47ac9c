"""What do levelling tilted crops (`deskew_max_degrees`) and undoing plates' keystone (`rectify_plate`) cost per crop,
and how many crops does levelling turn?

Times the processor's image preparation of the plates of a dataset split with both options off, with levelling, and
with levelling and rectification, alternating in rounds in one process on the same crops, and counts the crops it
levels, per degradation.

    python benchmarks/bench_deskew.py --dataset_name data/demo_latin20000 --split test
    python benchmarks/bench_deskew.py --split validation --sheet results/rectify_examples.png

With `--sheet`, also saves a picture of the first crops of one degradation (perspective by default) as the model
sees them: the recipe's strip (`--image_size`) without levelling, levelled, and levelled and rectified.

Prints milliseconds per crop (median of the rounds) for the preparation alone (RGB, levelling, rectification,
resize to the strip).
The numbers depend on the machine; nothing here is asserted by the tests.
"""

import argparse
import collections
import io
import statistics
import time
from pathlib import Path

from datasets import load_from_disk
from PIL import Image

from lpllm.evaluation.outputs import atomic_write_bytes
from modeling_lpllm import build_offline_processor
from modeling_lpllm.deskew import MIN_TILT_DEGREES, estimate_tilt


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_name", default="data/demo_latin20000", help="A dataset_scripts.build folder.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max_degrees", type=float, default=20.0)
    parser.add_argument(
        "--image_size", nargs=2, type=int, default=[32, 672], metavar=("HEIGHT", "WIDTH"),
        help="The strip's size, as in the CPU recipe.",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sheet", help="Also save a PNG of crops as each preparation gives them to the model.")
    parser.add_argument("--sheet_degradation", default="perspective", help="Which crops the sheet shows.")
    parser.add_argument("--sheet_rows", type=int, default=12)
    return parser.parse_args(argv)


def save_sheet(path, crops: list[Image.Image], set_ups: dict, gap: int = 6) -> None:
    """One row per crop, one column per preparation (each gives a strip of the same size), written atomically."""
    strips = [[processor.prepare_images(crop) for processor in set_ups.values()] for crop in crops]
    width, height = strips[0][0].size
    sheet = Image.new("RGB", (len(set_ups) * (width + gap) - gap, len(strips) * (height + gap) - gap), "white")
    for row, prepared in enumerate(strips):
        for column, strip in enumerate(prepared):
            sheet.paste(strip, (column * (width + gap), row * (height + gap)))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def main(argv=None):
    args = parse_args(argv)
    if not Path(args.dataset_name, "dataset_dict.json").is_file():
        raise SystemExit(f"{args.dataset_name}: no dataset there; build it with `python -m dataset_scripts.build`.")
    split = load_from_disk(args.dataset_name)[args.split]
    crops = [row["images"][0].convert("RGB") for row in split]
    degradations = split["degradation"] if "degradation" in split.column_names else ["?"] * len(crops)
    image_size = args.image_size
    set_ups = {
        "off": build_offline_processor(image_size=image_size),
        f"deskew_max_degrees={args.max_degrees:g}": build_offline_processor(
            image_size=image_size, deskew_max_degrees=args.max_degrees
        ),
        f"deskew_max_degrees={args.max_degrees:g}, rectify_plate": build_offline_processor(
            image_size=image_size, deskew_max_degrees=args.max_degrees, rectify_plate=True
        ),
    }
    timings = {name: [] for name in set_ups}
    for _ in range(args.rounds):
        for name, processor in set_ups.items():
            start = time.perf_counter()
            for crop in crops:
                processor.prepare_images(crop)
            timings[name].append(1000 * (time.perf_counter() - start) / len(crops))
    print(f"{len(crops)} crops of {args.dataset_name} [{args.split}], median of {args.rounds} rounds")
    print("| preparation | ms per crop |\n| --- | --- |")
    for name, values in timings.items():
        print(f"| {name} | {statistics.median(values):.2f} |")

    levelled, totals = collections.Counter(), collections.Counter(degradations)
    for crop, degradation in zip(crops, degradations):
        if abs(estimate_tilt(crop, args.max_degrees)) >= MIN_TILT_DEGREES:
            levelled[degradation] += 1
    print("\n| degradation | crops | levelled |\n| --- | --- | --- |")
    for degradation in sorted(totals):
        print(f"| {degradation} | {totals[degradation]} | {levelled[degradation]} |")
    print(f"| all | {len(crops)} | {sum(levelled.values())} |")
    if args.sheet:
        chosen = [crop for crop, degradation in zip(crops, degradations) if degradation == args.sheet_degradation]
        if not chosen:
            raise SystemExit(f"{args.dataset_name} [{args.split}] has no {args.sheet_degradation!r} crops to show.")
        save_sheet(args.sheet, chosen[: args.sheet_rows], set_ups)
        print(f"\nsheet ({', '.join(set_ups)}, left to right): {args.sheet}")
    return {name: statistics.median(values) for name, values in timings.items()}, dict(levelled)


if __name__ == "__main__":
    main()
