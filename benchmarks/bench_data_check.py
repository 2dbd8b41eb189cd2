#!/usr/bin/env python
"""Cost of the data checks that run before the first iteration, per file and at full size.

Generates images of the shipped benchmarks' sizes and times, one file after another in one
thread, the checks of ``disalign_core.image_files`` that the plugins' pre-checks run:

- ``exists``: one ``os.path.isfile`` (what the checks did before);
- ``headers``: ``image_file_problem`` (format and size from the header, and the file's last
  bytes: a JPEG must end with EOI, a PNG with IEND; for the LVIS-like files also the size
  against the annotation's, as detectron2's check does), the default of every plugin;
- ``full``: ``image_file_problem(decode=True)``, every pixel decoded (the option);
- ``labels``: ``label_map_values``, a label map decoded and its values counted (MMSegmentation's
  default value check).

Files: LVIS-like 640x480 JPEGs (quality 90, ~140 KB), ImageNet-like 500x375 JPEGs, ADE20K-like
683x512 PNG label maps (20 regions of class ids). Each check runs with the files in the page
cache ("warm", the usual case: the pre-check runs after the dataset's json/list was read, not
after the images were) and after ``posix_fadvise(DONTNEED)`` evicted them ("cold": every byte
from this machine's disk). The per-file mean is extrapolated to the data sets' sizes, for one
process and for ``--processes`` processes (the distributed ranks split the files; linear
scaling assumed, not measured).

    python benchmarks/bench_data_check.py [--files 200] [--processes 8] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT]
from disalign_core.image_files import image_file_problem, label_map_values  # noqa: E402

# (kind, data set, images of the full data set the checks read)
FULL_SIZE = {
    "lvis_jpeg": ("LVIS v1 train + val (COCO 2017 images)", 100_170 + 19_809),
    "imagenet_jpeg": ("ImageNet-LT train + val + test", 115_846 + 20_000 + 50_000),
    "ade20k_label_png": ("ADE20K train + val label maps", 20_210 + 2_000),
}


def _natural_jpeg(rng, width, height):
    """Smooth colour field plus noise: JPEG sizes like photographs' (~1.2 bits/pixel)."""
    low = rng.random((height // 16, width // 16, 3))
    base = Image.fromarray((low * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(base).astype(np.float32) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _label_map(rng, width, height, regions=20, num_classes=150):
    """Voronoi regions of random class ids 0..num_classes (0: ADE20K's 'other')."""
    seeds = rng.random((regions, 2)) * (width, height)
    ys, xs = np.mgrid[0:height, 0:width]
    d = (xs[..., None] - seeds[:, 0]) ** 2 + (ys[..., None] - seeds[:, 1]) ** 2
    ids = rng.integers(0, num_classes + 1, regions).astype(np.uint8)
    return Image.fromarray(ids[d.argmin(-1)], mode="L")


def generate(folder, files, seed=0):
    rng = np.random.default_rng(seed)
    made = {}
    for kind, size, suffix, make in (
        ("lvis_jpeg", (640, 480), ".jpg", _natural_jpeg),
        ("imagenet_jpeg", (500, 375), ".jpg", _natural_jpeg),
        ("ade20k_label_png", (683, 512), ".png", _label_map),
    ):
        os.makedirs(os.path.join(folder, kind))
        paths = []
        for i in range(files):
            path = os.path.join(folder, kind, f"{i:06d}{suffix}")
            image = make(rng, *size)
            image.save(path, quality=90) if suffix == ".jpg" else image.save(path)
            paths.append(path)
        made[kind] = paths
    return made


def evict(paths):
    """Drop the files' pages from the page cache (clean pages; no root needed)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _time_each(check, paths):
    t = time.perf_counter()
    for p in paths:
        check(p)
    return (time.perf_counter() - t) / len(paths)


def _must_pass(check):
    def run(path):
        out = check(path)
        problem = out[1] if isinstance(out, tuple) else out
        assert not problem, (path, problem)

    return run


CHECKS = {
    "exists": lambda p: None if os.path.isfile(p) else "missing",
    "headers": image_file_problem,
    "full": lambda p: image_file_problem(p, decode=True),
    "labels": label_map_values,
}


def measure(made, repeats):
    rows = []
    for kind, paths in made.items():
        names = ["exists", "headers", "full"] + (["labels"] if "label" in kind else [])
        mean_bytes = float(np.mean([os.path.getsize(p) for p in paths]))
        for name in names:
            check = CHECKS[name]
            if kind == "lvis_jpeg" and name == "headers":
                # detectron2's check also compares the size with the json's width/height
                check = lambda p: image_file_problem(p, expected_size=(640, 480))  # noqa: E731
            check = _must_pass(check)
            check(paths[0])  # imports and first-use costs out of the timing
            warm = min(_time_each(check, paths) for _ in range(repeats))
            colds = []
            for _ in range(repeats):
                evict(paths)
                colds.append(_time_each(check, paths))
            rows.append(
                dict(kind=kind, check=name, bytes=mean_bytes, warm_s=warm, cold_s=min(colds))
            )
    return rows


def table(rows, processes):
    lines = [
        f"| files | check | per file, warm / cold (ms) | full size: 1 process, warm / cold "
        f"| {processes} processes, warm / cold |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        what, count = FULL_SIZE[r["kind"]]
        w, c = r["warm_s"], r["cold_s"]
        lines.append(
            f"| {what}: {count:,} ({r['bytes'] / 1024:.0f} KB each) | {r['check']} "
            f"| {w * 1e3:.3f} / {c * 1e3:.3f} | {w * count:.1f} s / {c * count:.1f} s "
            f"| {w * count / processes:.1f} s / {c * count / processes:.1f} s |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200, help="files generated per kind")
    parser.add_argument("--repeats", type=int, default=3, help="the best of this many passes")
    parser.add_argument("--processes", type=int, default=8, help="for the extrapolation")
    parser.add_argument("--out", help="write the measurements as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as folder:
        rows = measure(generate(folder, args.files), args.repeats)
    print(table(rows, args.processes))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(dict(files=args.files, processes=args.processes, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
