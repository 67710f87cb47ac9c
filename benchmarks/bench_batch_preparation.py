"""What does preparing a training batch of the embedded default cost, outside the model? Times what happens to 32
decoded plate crops between the in-memory split and the model's `pixel_values` (a cast shadow on 30% of them, the
random corner jitter resampling each to the 32x672 strip, then rescaling, normalising and cutting into patches), in
three set-ups, alternating in rounds in one process on the same crops and the same random draws:

- `PIL jitter + image processor`: the jitter as PIL's `Image.transform(QUAD)` and the image processor's own per-image
  numpy path: the recipe before this benchmark;
- `OpenCV jitter`: `lpllm.training.augmentation.quad_warp` (PIL's source points, sampled by OpenCV);
- `+ batched pixel values`: `LPLLMProcessor.fixed_size_image_inputs` as well (one table look-up for the batch): the
  recipe today (`PlateCollator` takes it wherever the crops are 8-bit arrays of the fixed image size).

    python benchmarks/bench_batch_preparation.py --dataset_name data/demo_latin20000

Checks before timing that the set-ups agree: the two jitters within one level of 255 on every pixel, the two pixel
paths float for float. Prints milliseconds per batch (median of the rounds) and the speed-up over the first set-up.
The tokenization and padding of the batch (the same in every set-up) are not timed. The numbers depend on the
machine and its load; nothing here is asserted by the tests.
"""

import argparse
import statistics
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from datasets import load_from_disk
from PIL import Image

from lpllm.training import augmentation
from lpllm.training.augmentation import plate_augmentation
from modeling_lpllm import build_offline_processor


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_name", default="data/demo_latin20000", help="A dataset_scripts.build folder.")
    parser.add_argument(
        "--image_size", nargs=2, type=int, default=[32, 672], metavar=("HEIGHT", "WIDTH"), help="As in the CPU recipe."
    )
    parser.add_argument("--batch", type=int, default=32, help="Plates per batch, as in the recipe.")
    parser.add_argument("--rows", type=int, default=640, help="Training crops decoded and prepared once.")
    parser.add_argument("--batches", type=int, default=10, help="Batches per set-up and round.")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def pil_quad_warp(pixels: np.ndarray, quad: list[float], size: tuple[int, int]) -> np.ndarray:
    """`quad_warp` as PIL computes it (what `RandomQuadJitter` did before it)."""
    image = Image.fromarray(pixels)
    edge = image.getpixel((0, 0))
    return np.asarray(
        image.transform(size, Image.Transform.QUAD, quad, resample=Image.Resampling.BILINEAR, fillcolor=edge)
    )


def main(argv=None):
    args = parse_args(argv)
    if not Path(args.dataset_name, "dataset_dict.json").is_file():
        raise SystemExit(f"{args.dataset_name}: no dataset there; build it with `python -m dataset_scripts.build`.")
    image_size = args.image_size
    processor = build_offline_processor(image_size=image_size, deskew_max_degrees=20.0, rectify_plate=True)
    split = load_from_disk(args.dataset_name)["train"]
    split = split.select(range(min(args.rows, len(split))))
    crops = [processor.prepare_images(row["images"][0], resize=False) for row in split]
    augment = plate_augmentation(quad_jitter=(0.05, 0.2), shadow=(0.3, 0.6), output_size=image_size)
    generator = np.random.default_rng(args.seed)
    batches = [generator.choice(len(crops), size=args.batch, replace=False) for _ in range(args.batches)]

    def jittered(indices, warp):
        with mock.patch.object(augmentation, "quad_warp", warp):
            return [np.asarray(augment(crops[index]), dtype=np.uint8) for index in indices]

    set_ups = {
        "PIL jitter + image processor": lambda indices: processor.image_processor(
            images=jittered(indices, pil_quad_warp), return_tensors="pt"
        ),
        "OpenCV jitter": lambda indices: processor.image_processor(
            images=jittered(indices, augmentation.quad_warp), return_tensors="pt"
        ),
        "+ batched pixel values": lambda indices: processor.fixed_size_image_inputs(
            jittered(indices, augmentation.quad_warp)
        ),
    }

    torch.manual_seed(args.seed)
    by_pil = jittered(batches[0], pil_quad_warp)
    torch.manual_seed(args.seed)
    by_opencv = jittered(batches[0], augmentation.quad_warp)
    level_gap = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(by_pil, by_opencv))
    reference = processor.image_processor(images=by_opencv, return_tensors="pt")["pixel_values"]
    if level_gap > 1 or not torch.equal(processor.fixed_size_image_inputs(by_opencv)["pixel_values"], reference):
        raise SystemExit(f"The set-ups disagree: jitters {level_gap} levels apart, or the pixel paths differ.")
    print(f"the two jitters agree within {level_gap} level; the two pixel paths float for float")

    timings = {name: [] for name in set_ups}
    for round_index in range(args.rounds):
        for name, prepare in set_ups.items():
            torch.manual_seed(args.seed + round_index)
            start = time.perf_counter()
            for indices in batches:
                prepare(indices)
            timings[name].append(1000 * (time.perf_counter() - start) / len(batches))
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(f"{n} {t[-1]:.1f} ms" for n, t in timings.items()))

    first = statistics.median(next(iter(timings.values())))
    size = "{}x{}".format(*args.image_size)
    print(f"\n{torch.get_num_threads()} threads, batch {args.batch}, {size} strips, median of {args.rounds} "
          f"rounds of {args.batches} batches")
    print("| set-up | ms/batch | speed-up |\n| --- | --- | --- |")
    for name, values in timings.items():
        print(f"| {name} | {statistics.median(values):.1f} | {first / statistics.median(values):.2f}x |")
    return {name: statistics.median(values) for name, values in timings.items()}


if __name__ == "__main__":
    main()
