#!/usr/bin/env python
"""All benchmarks: calibration cost (time, memory, inference latency) and post-hoc baselines.

The post-hoc comparison needs the demo's stage-1 models; it runs the demo first when its
results are missing.

    python benchmarks/run_all.py [--demo-dir output/demo] [--iters 20]
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo-dir", default="output/demo")
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    py = sys.executable
    os.makedirs(args.demo_dir, exist_ok=True)
    subprocess.run(
        [py, os.path.join(HERE, "bench_calibration_cost.py"), "--iters", str(args.iters),
         "--json", os.path.join(args.demo_dir, "bench_cost.json")],
        check=True,
    )  # fmt: skip
    have_demo = all(
        os.path.isfile(os.path.join(args.demo_dir, fw, f"{fw}_results.json"))
        for fw in ("det", "seg")
    )
    if not have_demo:
        subprocess.run(
            [py, os.path.join(ROOT, "tools", "demo", "run_demo.py"), "--output", args.demo_dir],
            check=True,
        )
    subprocess.run(
        [py, os.path.join(HERE, "bench_posthoc.py"), "--demo-dir", args.demo_dir,
         "--json", os.path.join(args.demo_dir, "bench_posthoc.json")],
        check=True,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
