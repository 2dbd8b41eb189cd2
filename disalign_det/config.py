"""All config keys of the DisAlign detectron2 plugin, in one place.

Defaults leave detectron2's behaviour unchanged: with them, ``DisAlignFastRCNNOutputLayers``
is a plain linear ``FastRCNNOutputLayers`` trained with plain cross-entropy.

Beyond the paper (off by default, the paper's recipe unchanged): ``MODEL.DISALIGN.POSTHOC``
(training-free logit adjustment / tau-normalisation of a stage-1 box classifier, for
``--eval-only``), ``MODEL.DISALIGN.MARGIN_INIT`` / ``PRIOR_TAU`` (DisAlign's margin starts at the
logit-adjustment solution) and ``DATASETS.HELDOUT`` (a calibration split withheld from stage 1).
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_disalign_config"]


def add_disalign_config(cfg: CN) -> None:
    """Add the ``MODEL.DISALIGN`` and ``DATASETS.HELDOUT`` nodes to ``cfg`` (in place).

    Every key of the node is part of a run's recipe: checkpoints store them and ``--resume``
    refuses a config that changes one (``disalign_det.calibration_stage.disalign_recipe``). A
    run-time switch that may change between a run and its resume does not belong here.
    """
    _C = cfg
    _C.MODEL.DISALIGN = CN()
    # Box classifier h_o: "linear" (z_j = w_j . x + b_j) or "cosine"
    # (z_j = s * w_j . x / (|w_j| |x|), all K+1 logits incl. background; the paper's "*" rows).
    _C.MODEL.DISALIGN.CLASSIFIER = "linear"
    # Initial value of the cosine classifier's learnable scale s.
    _C.MODEL.DISALIGN.COSINE_SCALE = 20.0
    # Build the distribution calibration (paper eq. 6) on the K foreground logits:
    # z_hat = (1 + sigma(x) alpha) z + sigma(x) beta. It starts as the identity.
    _C.MODEL.DISALIGN.CALIBRATION = False
    # Learn the per-class magnitude alpha (ablation switch).
    _C.MODEL.DISALIGN.MAGNITUDE = True
    # Learn the per-class margin beta (ablation switch).
    _C.MODEL.DISALIGN.MARGIN = True
    # Confidence sigma: "input" = sigmoid(v . x + b) from the box-head feature x (paper),
    # "constant" = sigmoid(b), "none" = 1.
    _C.MODEL.DISALIGN.CONFIDENCE = "input"
    # Generalized re-weighting (paper eq. 11) of the classification loss: foreground class j
    # gets weight K (1/r_j)^rho / sum_k (1/r_k)^rho, the background weight 1.
    _C.MODEL.DISALIGN.REWEIGHT = False
    # rho, the exponent of the re-weighting (0: instance-balanced, 1: class-balanced).
    _C.MODEL.DISALIGN.RHO = 0.8
    # What the class frequencies r_j count: "images" (images containing class j; the paper's
    # "per-class training frequency", and LVIS's definition of its rare/common/frequent groups)
    # or "instances" (annotations of class j). The authors' code reads their published
    # num_shots_v0.5.npy / num_shots_v1.0.json, which do not say which; we default to images.
    _C.MODEL.DISALIGN.FREQUENCY_TYPE = "images"
    # Class frequencies r_j. Empty: taken from the training datasets' metadata
    # ("class_image_count" for images, as detectron2's LVIS v1; "class_instance_count" for
    # instances, set by register_disalign_instances from the json) or counted from
    # DATASETS.TRAIN. Otherwise a file read by disalign_core.read_class_frequencies (JSON,
    # text, or the authors' num_shots_v0.5.npy / num_shots_v1.0.json), used as it is whatever
    # FREQUENCY_TYPE says.
    _C.MODEL.DISALIGN.FREQUENCY_FILE = ""
    # A class with no training image: "error" (raise) or "warn" (use the rarest class's weight).
    _C.MODEL.DISALIGN.ZERO_COUNT = "error"
    # Calibration stage: freeze everything but the calibration (BatchNorm statistics included)
    # and skip the losses of the frozen mask/keypoint heads.
    _C.MODEL.DISALIGN.FREEZE = False
    # --- Our extensions beyond the paper; the defaults are the paper's recipe. ---
    # Start of the calibration's margin beta: "zero" (the paper: the identity) or "prior": the
    # logit-adjustment solution beta = -PRIOR_TAU * log(pi) / sigma_0, centred over the K
    # foreground classes (pi from the same class frequencies as the re-weighting,
    # FREQUENCY_TYPE / FREQUENCY_FILE; sigma_0 = 0.5 for the "input" and "constant" confidences,
    # 1 for "none"), so that stage 2 learns only what the class prior does not give; or
    # "prior_offset": -PRIOR_TAU * log(pi) as a fixed offset outside the confidence, beta = 0,
    # so stage 2 starts at exactly logit adjustment (core DisAlignCalibration's docstring).
    _C.MODEL.DISALIGN.MARGIN_INIT = "zero"
    # tau of the "prior" start (>= 0; 0 is the zero start).
    _C.MODEL.DISALIGN.PRIOR_TAU = 1.0
    # Training-free calibration of a stage-1 box classifier, for --eval-only with
    # MODEL.WEIGHTS the stage-1 model (nothing is trained; training with it is refused):
    _C.MODEL.DISALIGN.POSTHOC = CN()
    # "" (off), "logit_adjustment" (z_j - TAU * (log pi_j - mean_k log pi_k) on the K
    # foreground logits; pi as for MARGIN_INIT) or "tau_norm" (foreground rows of the linear
    # classifier w_j / |w_j|^TAU, biases kept; a cosine classifier's rows are normalised
    # already, so it is refused there). The background logit is never changed. It replaces the
    # DisAlign calibration, which a stage-2 config still builds (so it loads the stage-1
    # model unchanged) but does not apply.
    _C.MODEL.DISALIGN.POSTHOC.TYPE = ""
    # tau of POSTHOC.TYPE (>= 0; 0 changes nothing).
    _C.MODEL.DISALIGN.POSTHOC.TAU = 1.0

    # A held-out calibration split: FRACTION of the training images (each stratified by its
    # rarest category, disalign_core.heldout_split) is withheld from stage 1, and stage 2
    # calibrates on those withheld images only. 0.0: off (the paper: both stages train on all
    # of DATASETS.TRAIN). The class frequencies (re-weighting, prior) stay those of the whole
    # training set: both parts keep its class profile.
    _C.DATASETS.HELDOUT = CN()
    _C.DATASETS.HELDOUT.FRACTION = 0.0
    # The part the trainer trains on: "stage1" (the stage-1 config) or "calibration" (the
    # stage-2 config). Both configs need the same DATASETS.TRAIN, FRACTION and SEED.
    _C.DATASETS.HELDOUT.PART = "stage1"
    # Seed of the split's shuffle (the same seed always gives the same split).
    _C.DATASETS.HELDOUT.SEED = 0
