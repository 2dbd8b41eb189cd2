"""Checks of the annotation lists and images before any iteration runs, for MMPretrain.

``custom_hooks = [dict(type='DisAlignDataCheckHook')]`` (the shipped configs add it) runs at
``before_run``: after the runner has built the model, the loops and their datasets (so the
annotation lists have been read), before it loads a checkpoint or reads a batch. For the
train, val and test datasets of the run:

- every **label** must be a class id in [0, K), K = ``model.head.num_classes``. A label >= K
  would otherwise stop training at the first batch that holds it (``Target 16 is out of
  bounds``), naming neither the list nor the line; in the evaluation it would count as wrong.
  The error names the list (``ann_file``), the line, the label, K and the config keys;
- every **image** must exist (one ``os.path.isfile`` each: ImageNet-LT's 186K take ~1 s). A
  missing image would otherwise stop training when the loader reaches it, possibly hours in;
- the **headers** of a sample of the images (``sample=2000`` per dataset, random, fixed seed):
  format and size read, a JPEG/PNG must end as a complete file (MMPretrain's default cv2
  decoder fills a cut-short JPEG with grey without an error). ``sample=None`` checks every
  image (0.12 / 0.40 ms each in one thread, files in the page cache / read from disk: 23 / 74
  s for ImageNet-LT's 186K images in one process, 6 / 19 s split among 4;
  ``benchmarks/bench_data_check.py``), and ``check_images='full'`` decodes them (1.4 / 1.8
  ms each).

The processes of a distributed run split the images and gather what they found, so every
process raises the same error.

A label that is not an integer (``'x.jpg cat'``) is refused by MMPretrain's ``CustomDataset``
when it reads the list, before this hook runs. The GRW loss and ``LongTailAccuracy`` count the
training list when they are built (before the hook); ``label_range_message`` words their error
the same way when given the dataset.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from disalign_core.image_files import image_file_problem, sample
from disalign_mmengine.data_check import (
    check_hook_options,
    dataset_infos,
    find_in_parallel,
    leaf_datasets,
    run_datasets,
)

__all__ = ["DisAlignDataCheckHook", "label_range_message", "out_of_range_labels"]

_CLASSES_KEY = "model.head.num_classes"


def _labels(info: dict) -> List[int]:
    label = info.get("gt_label")
    if label is None:
        return []
    return [int(v) for v in np.asarray(label).reshape(-1)]


def out_of_range_labels(infos: Sequence[dict], num_classes: int) -> List[Tuple[int, List[int]]]:
    """(index, labels outside [0, num_classes)) of each data info that has some."""
    out = []
    for i, info in enumerate(infos):
        bad = [v for v in _labels(info) if not 0 <= v < num_classes]
        if bad:
            out.append((i, bad))
    return out


def _list_lines(dataset, paths: Sequence[str]) -> Dict[str, Tuple[int, str]]:
    """{image path: (line number, line)} of the dataset's annotation list for ``paths``, read
    as MMPretrain's CustomDataset reads it ('path label' lines); {} when there is no list."""
    ann_file = getattr(dataset, "ann_file", None)
    if not ann_file or not os.path.isfile(ann_file):
        return {}
    prefix = getattr(dataset, "img_prefix", "") or ""
    wanted, found = set(paths), {}
    with open(ann_file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            name = line.strip().rsplit(" ", 1)[0]
            path = os.path.join(prefix, name) if prefix else name
            if path in wanted and path not in found:
                found[path] = (number, line.strip())
    return found


def _where(dataset, path: str, lines: Dict[str, Tuple[int, str]]) -> str:
    if path in lines:
        number, line = lines[path]
        return f"{dataset.ann_file} line {number} ({line!r})"
    return repr(path)


def label_range_message(
    dataset,
    infos: Sequence[dict],
    num_classes: int,
    dataset_key: str,
    classes_key: str = _CLASSES_KEY,
    max_listed: int = 5,
) -> Optional[str]:
    """The error for labels outside [0, num_classes) in a dataset, or None: the list file, the
    lines, the labels, K, the config keys and the fix."""
    bad = out_of_range_labels(infos, num_classes)
    if not bad:
        return None
    paths = [infos[i].get("img_path", f"item {i}") for i, _ in bad[:max_listed]]
    lines = _list_lines(dataset, paths)
    shown = "; ".join(
        f"{_where(dataset, p, lines)}: label {', '.join(map(str, v))}"
        for p, (_, v) in zip(paths, bad)
    )
    more = f"; and {len(bad) - max_listed} more" if len(bad) > max_listed else ""
    values = [v for _, vs in bad for v in vs]
    all_labels = [v for info in infos for v in _labels(info)]
    ann = getattr(dataset, "ann_file", None)
    source = f"{dataset_key}.ann_file={ann!r}" if ann else dataset_key
    if min(all_labels) >= 1 and max(values) == num_classes:
        fix = (
            f"the list seems to count classes from 1 (labels 1..{num_classes}): subtract 1 from "
            "every label, so that they run from 0"
        )
    else:
        fix = (
            f"if the data has more classes than the model, set {classes_key} (and "
            "data_preprocessor.num_classes) to its class count and give class frequencies of "
            "that many classes; otherwise correct these lines, or use the list that belongs "
            "to this data set"
        )
    return (
        f"{len(bad)} of the {len(infos)} images of {source} have labels that are not class ids "
        f"in [0, {num_classes}) ({classes_key}={num_classes}): {shown}{more}. Fix: {fix}."
    )


@HOOKS.register_module()
class DisAlignDataCheckHook(Hook):
    """Fail before the first iteration on labels outside the model's classes, missing images
    and damaged images (module docstring).

    Args:
        check_labels (bool): every label in [0, model.head.num_classes).
        check_files (bool): every image exists.
        check_images (str | None): ``'headers'`` (default), ``'full'`` (decode) or None.
        sample (int, optional): images per dataset whose contents are checked (random, fixed
            seed); None: all. E.g. ``--cfg-options custom_hooks.0.sample=None``.
        max_listed (int): how many lines or files an error lists.
        num_threads (int, optional): threads per process (default: its CPUs, at most 8).
    """

    priority = "VERY_HIGH"

    def __init__(
        self,
        check_labels: bool = True,
        check_files: bool = True,
        check_images: Optional[str] = "headers",
        sample: Optional[int] = 2000,
        max_listed: int = 5,
        num_threads: Optional[int] = None,
    ):
        check_hook_options(check_images, sample)
        self.check_labels = check_labels
        self.check_files = check_files
        self.check_images = check_images or None
        self.sample = sample
        self.max_listed = max_listed
        self.num_threads = num_threads

    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        num_classes = getattr(getattr(model, "head", None), "num_classes", None)
        leaves = [leaf for key, d in run_datasets(runner) for leaf in leaf_datasets(d, key)]
        problems, kinds = [], set()
        to_check: List[Tuple[str, str]] = []  # (dataset key, image path)
        sampled = False  # some dataset's images were sampled, not all checked
        for key, dataset in leaves:
            infos = dataset_infos(dataset)
            if self.check_labels and num_classes is not None:
                message = label_range_message(
                    dataset, infos, num_classes, key, max_listed=self.max_listed
                )
                if message:
                    problems.append(message)
                    kinds.add("labels")
            paths = [info["img_path"] for info in infos if info.get("img_path")]
            missing = [p for p in paths if not os.path.isfile(p)] if self.check_files else []
            if missing:
                problems.append(self._missing_message(dataset, key, paths, missing))
                kinds.add("missing")
            if self.check_images:
                absent = set(missing)
                present = [p for p in paths if p not in absent]
                chosen = sample(present, self.sample)
                sampled |= len(chosen) < len(present)
                to_check += [(key, p) for p in chosen]
        if self.check_images:
            # Every process gets here (the findings above are the same in all of them), so
            # the gather inside is reached by all.
            damaged = self._damaged_images(to_check, sampled)
            if damaged:
                problems.append(damaged)
                kinds.add("damaged")
        if problems:
            error = FileNotFoundError if kinds == {"missing"} else ValueError
            raise error("the data cannot be used as it is:\n" + "\n".join(problems))

    def _missing_message(self, dataset, key, paths, missing) -> str:
        n = self.max_listed
        lines = _list_lines(dataset, missing[:n])
        shown = "; ".join(_where(dataset, p, lines) for p in missing[:n])
        more = f"; and {len(missing) - n} more" if len(missing) > n else ""
        ann = getattr(dataset, "ann_file", None)
        return (
            f"{len(missing)} of the {len(paths)} images listed by {key}"
            + (f" (ann_file {ann!r})" if ann else "")
            + f" do not exist: {shown}{more}. Fix: check {key}.data_root and data_prefix (the "
            "list's paths are joined to them; a path starting with '/' is not), or restore the "
            "missing images, or remove their lines from the list."
        )

    def _damaged_images(self, to_check: Sequence[Tuple[str, str]], sampled: bool) -> Optional[str]:
        decode = self.check_images == "full"

        def check(item):
            problem = image_file_problem(item[1], decode=decode)
            return (item[0], item[1], problem) if problem else None

        found = find_in_parallel(check, to_check, self.num_threads)
        if not found:
            return None
        parts = []
        n = self.max_listed
        for key in sorted({r[0] for r in found}):
            rows = sorted(f"{r[1]!r} {r[2]}" for r in found if r[0] == key)
            checked = sum(1 for k, _ in to_check if k == key)
            more = f"; and {len(rows) - n} more" if len(rows) > n else ""
            parts.append(
                f"{len(rows)} of the {checked} images of {key} checked "
                f"(check_images={self.check_images!r}, sample={self.sample}) cannot be used: "
                f"{'; '.join(rows[:n])}{more}."
            )
        return "\n".join(parts) + (
            " Fix: copy these images again (a file cut short is usually an interrupted "
            "transfer), or remove their lines from the list"
            + (
                "; other images may be damaged too: check them all with --cfg-options "
                "custom_hooks.0.sample=None (0: this hook's place in custom_hooks)."
                if sampled
                else "."
            )
        )
