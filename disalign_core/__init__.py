"""Framework-free DisAlign core: calibration, generalized re-weighting, long-tail groups,
freezing, class-frequency files and the training-free post-hoc calibrations (logit
adjustment, tau-normalisation). Pure PyTorch; imports neither detectron2, MMSegmentation nor
MMPretrain."""

from .calibration import CONFIDENCE_MODES, MARGIN_INITS, DisAlignCalibration, confidence_at_start
from .foreground import calibrate_foreground
from .freezing import (
    LOCKS,
    MODE_DEPENDENT_LAYERS,
    freeze_all_but_calibration,
    freeze_except,
    is_eval_locked,
    is_frozen,
)
from .frequencies import (
    ADE20K_OBJECT_INFO_HEADER,
    ClassFrequencies,
    FrequencySource,
    check_class_names,
    read_class_frequencies,
    write_class_frequencies,
)
from .groups import (
    ADE20K_SHARE_THRESHOLDS,
    CLASSIFICATION_COUNT_BINS,
    LVIS_COUNT_BINS,
    group_indices,
    groups_by_count,
    groups_by_share,
)
from .heldout import HELDOUT_PARTS, HeldOutSplit, check_heldout_fraction, heldout_split
from .losses import AVG_MODES, REDUCTIONS, check_reduction, full_class_weights, grw_cross_entropy
from .posthoc import (
    POSTHOC_TYPES,
    PosthocAdjustment,
    check_tau,
    logit_adjustment_margin,
    posthoc_config,
    tau_norm_scale,
    tau_normalize,
    tau_normalized_logits,
)
from .reweighting import ZERO_COUNT_POLICIES, check_class_counts, grw_class_weights
from .run_files import (
    HASH_SUFFIX,
    NOT_SET,
    ResumeChoice,
    atomic_write,
    file_sha256,
    is_complete_checkpoint,
    plain_value,
    recipe_differences,
    resolve_resume_checkpoint,
)
from .stage1_checkpoint import (
    Stage1CheckpointMismatch,
    check_stage1_keys,
    describe_local_file,
    is_calibration_key,
    is_url,
)

__all__ = [
    # calibration
    "CONFIDENCE_MODES",
    "MARGIN_INITS",
    "DisAlignCalibration",
    "confidence_at_start",
    # freezing
    "LOCKS",
    "MODE_DEPENDENT_LAYERS",
    "freeze_all_but_calibration",
    "freeze_except",
    "is_eval_locked",
    "is_frozen",
    # frequencies
    "ADE20K_OBJECT_INFO_HEADER",
    "ClassFrequencies",
    "FrequencySource",
    "check_class_names",
    "read_class_frequencies",
    "write_class_frequencies",
    # detection: the foreground-only split
    "calibrate_foreground",
    # groups
    "ADE20K_SHARE_THRESHOLDS",
    "CLASSIFICATION_COUNT_BINS",
    "LVIS_COUNT_BINS",
    "group_indices",
    "groups_by_count",
    "groups_by_share",
    # held-out calibration split
    "HELDOUT_PARTS",
    "HeldOutSplit",
    "check_heldout_fraction",
    "heldout_split",
    # losses
    "AVG_MODES",
    "REDUCTIONS",
    "check_reduction",
    "full_class_weights",
    "grw_cross_entropy",
    # post-hoc (training-free) calibration
    "POSTHOC_TYPES",
    "PosthocAdjustment",
    "check_tau",
    "logit_adjustment_margin",
    "posthoc_config",
    "tau_norm_scale",
    "tau_normalize",
    "tau_normalized_logits",
    # reweighting
    "ZERO_COUNT_POLICIES",
    "check_class_counts",
    "grw_class_weights",
    # run files
    "HASH_SUFFIX",
    "NOT_SET",
    "ResumeChoice",
    "atomic_write",
    "file_sha256",
    "is_complete_checkpoint",
    "plain_value",
    "recipe_differences",
    "resolve_resume_checkpoint",
    # stage-1 checkpoints
    "Stage1CheckpointMismatch",
    "check_stage1_keys",
    "describe_local_file",
    "is_calibration_key",
    "is_url",
]
