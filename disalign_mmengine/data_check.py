"""What the OpenMMLab plugins' ``DisAlignDataCheckHook`` share: the datasets of a run, their
items, the hook's options, and checking files in threads split among the processes.

Each plugin's hook (``disalign_seg.data_check_hook``, ``disalign_cls.data_check_hook``) adds
what its data holds (label maps, list labels) and the wording of its errors.
"""

from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar

from mmengine.dataset import BaseDataset
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.runner import BaseLoop

from disalign_core.image_files import run_parallel, shard

__all__ = [
    "IMAGE_CHECKS",
    "LOOPS",
    "check_hook_options",
    "dataset_infos",
    "find_in_parallel",
    "leaf_datasets",
    "run_datasets",
]

# The runner's loops and the config keys of their datasets.
LOOPS = (
    ("_train_loop", "train_dataloader.dataset"),
    ("_val_loop", "val_dataloader.dataset"),
    ("_test_loop", "test_dataloader.dataset"),
)
# check_images: the header check or a full decode (disalign_core.image_files).
IMAGE_CHECKS = ("headers", "full")

T = TypeVar("T")


def check_hook_options(check_images: Optional[str], sample: Optional[int]) -> None:
    """A ValueError naming the value for a ``check_images`` or ``sample`` the hook cannot use."""
    if check_images not in (None, False) + IMAGE_CHECKS:
        raise ValueError(
            f"DisAlignDataCheckHook: check_images={check_images!r}, expected one of "
            f"{IMAGE_CHECKS} or None"
        )
    if sample is not None and sample < 1:
        raise ValueError(f"DisAlignDataCheckHook: sample={sample!r}, expected None or >= 1")


def run_datasets(runner) -> List[Tuple[str, object]]:
    """(config key, dataset) of the train, val and test loops the runner has built."""
    loops = [(key, getattr(runner, attr, None)) for attr, key in LOOPS]
    return [(key, loop.dataloader.dataset) for key, loop in loops if isinstance(loop, BaseLoop)]


def leaf_datasets(dataset, key: str = "") -> Iterator[Tuple[str, BaseDataset]]:
    """(config key, dataset) of the datasets under mmengine's wrappers (ConcatDataset,
    RepeatDataset, ClassBalancedDataset, DisAlignHeldOutSubset: its whole dataset)."""
    inner = getattr(dataset, "datasets", None)
    if inner is not None:
        for i, d in enumerate(inner):
            yield from leaf_datasets(d, f"{key}.datasets[{i}]")
    elif hasattr(dataset, "dataset") and not isinstance(dataset, BaseDataset):
        yield from leaf_datasets(dataset.dataset, f"{key}.dataset")
    else:
        yield key, dataset


def dataset_infos(leaf) -> List[dict]:
    """Every item's data info of a leaf dataset (a lazily initialised one is initialised)."""
    if isinstance(leaf, BaseDataset):
        leaf.full_init()  # a lazily initialised dataset has no data list yet
    return [leaf.get_data_info(i) for i in range(len(leaf))]


def find_in_parallel(
    check: Callable[[T], Optional[tuple]], items: Sequence[T], num_threads: Optional[int]
) -> List[tuple]:
    """``check`` on this process's share of ``items`` in threads; the non-None results of every
    process (gathered, so every process raises the same error)."""
    rank, world_size = get_dist_info()
    found = [r for r in run_parallel(check, shard(items, rank, world_size), num_threads) if r]
    if world_size > 1:
        found = [r for part in all_gather_object(found) for r in part]
    return found
