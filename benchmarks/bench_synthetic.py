"""Times the synthetic builder end to end: rendering, degrading, encoding, writing Arrow and Parquet.

    python benchmarks/bench_synthetic.py --num 20000 --workers 2

Prints the wall time and plates per second for N plates (the target is 20,000 plates in under 2 minutes on
2 cores). The dataset is written to a temporary folder and deleted afterwards unless --keep is given.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-parquet", dest="parquet", action="store_false")
    parser.add_argument("--keep", type=Path, default=None, help="Write the dataset here and keep it.")
    args = parser.parse_args()

    started = time.perf_counter()
    from dataset_scripts import BuildOptions, SyntheticConfig, build_synthetic

    imported = time.perf_counter()
    options = BuildOptions(seed=args.seed, num_workers=args.workers, parquet=args.parquet, progress=False)
    config = SyntheticConfig(num=args.num, frames=args.frames)
    with tempfile.TemporaryDirectory() as scratch:
        output = args.keep or Path(scratch) / "synthetic"
        result = build_synthetic(output, config, options)
        finished = time.perf_counter()
        size = sum(path.stat().st_size for path in Path(output).rglob("*") if path.is_file())

    build_seconds = finished - imported
    print(
        f"plates: {result.summary['num_samples']} ({args.frames} frame(s) each), "
        f"workers: {args.workers}, cores: {os.cpu_count()}"
    )
    print(f"build time: {build_seconds:.1f} s ({result.summary['num_samples'] / build_seconds:.1f} plates/s)")
    print(f"with imports: {finished - started:.1f} s; output size: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
