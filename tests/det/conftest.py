"""Shared fixtures of the detectron2 plugin's tests: a small generated long-tailed
LVIS-format dataset, registered once per session; seed and threads."""

import pytest
import torch
from det_testing import NUM_CLASSES, TRAIN, VAL

from disalign_demo.det import generate_lvis_synthetic
from disalign_det import register_disalign_instances


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    """Generate and register the small dataset; returns the generator's info dict."""
    root = str(tmp_path_factory.mktemp("lvis_synth"))
    info = generate_lvis_synthetic(
        root,
        num_classes=NUM_CLASSES,
        num_frequent=3,
        num_common=4,
        val_instances_per_class=3,
        seed=1,
    )
    register_disalign_instances(TRAIN, info["train_json"], info["image_root"])
    register_disalign_instances(VAL, info["val_json"], info["image_root"])
    return info


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Fixed seed; one torch thread (tiny models run faster so on 2 cores, see det_demo.py),
    restored afterwards for the other test folders."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
