"""Helpers of the detectron2 plugin's tests: paths and tiny configs. A module of its own
(not conftest) so that test files of tests/det and tests/seg can import their helpers by
distinct names in one pytest run."""

import os

from detectron2.config import get_cfg

from disalign_demo.det import add_tiny_backbone_config
from disalign_det import add_disalign_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "configs", "detectron2")
TINY = os.path.join(CONFIGS, "quick_schedules", "Base-DisAlign-Tiny-CPU.yaml")

# The session's generated dataset: 12 classes (3 frequent, 4 common, 5 rare).
TRAIN, VAL, NUM_CLASSES = "det_test_synth_train", "det_test_synth_val", 12


def tiny_cfg(config_file: str = TINY, opts=()):
    """A detectron2 config with the DisAlign keys and the demo's tiny-backbone keys (as
    train_net.py --demo), merged from a shipped YAML (None: the defaults)."""
    cfg = get_cfg()
    add_disalign_config(cfg)
    add_tiny_backbone_config(cfg)
    if config_file is not None:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg
