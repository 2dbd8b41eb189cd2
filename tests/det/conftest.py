"""Shared fixtures of the detectron2 plugin's tests: tiny configs and a small generated
long-tailed LVIS-format dataset, registered once per session."""

import os

import pytest
import torch
from detectron2.config import get_cfg

from disalign_det import add_disalign_config, register_disalign_instances
from disalign_det.synthetic import generate_lvis_synthetic

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "configs", "detectron2")
TINY = os.path.join(CONFIGS, "quick_schedules", "Base-DisAlign-Tiny-CPU.yaml")

# The session's generated dataset: 12 classes (3 frequent, 4 common, 5 rare).
TRAIN, VAL, NUM_CLASSES = "det_test_synth_train", "det_test_synth_val", 12


def tiny_cfg(config_file: str = TINY, opts=()):
    """A detectron2 config with the DisAlign keys, merged from a shipped YAML."""
    cfg = get_cfg()
    add_disalign_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg


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
