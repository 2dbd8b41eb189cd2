"""Framework-free DisAlign core: calibration, generalized re-weighting, long-tail groups and
freezing. Pure PyTorch; imports neither detectron2 nor MMSegmentation."""
from .calibration import CONFIDENCE_MODES, DisAlignCalibration
from .freezing import freeze_all_but_calibration, freeze_except, is_eval_locked
from .frequencies import read_class_frequencies, write_class_frequencies
from .groups import (
    ADE20K_SHARE_THRESHOLDS,
    CLASSIFICATION_COUNT_BINS,
    LVIS_COUNT_BINS,
    group_indices,
    groups_by_count,
    groups_by_share,
)
from .losses import full_class_weights, grw_cross_entropy
from .reweighting import ZERO_COUNT_POLICIES, check_class_counts, grw_class_weights

__all__ = [k for k in dir() if not k.startswith("_")]
