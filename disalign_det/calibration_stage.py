"""The calibration stage (stage 2): loading a stage-1 checkpoint and freezing all but the
calibration.

detectron2's checkpointer loads non-strictly and only warns about what does not fit: a weight
of another shape is skipped, a missing one keeps its random initialisation. Stage 2 trains only
the calibration on top of frozen layers, so ``DisAlignCheckpointer`` turns that into errors:

- always: a box classifier/regressor of another class count, and a linear classifier loaded into
  a cosine one (or the reverse), before anything is loaded;
- in stage 2 (``calibration_stage=True``, from ``MODEL.DISALIGN.FREEZE``), for the weights of
  ``MODEL.WEIGHTS`` (not for ``--resume`` of the run's own checkpoint): the checkpoint must hold
  every parameter and buffer of the model except the calibration's
  (``disalign_core.check_stage1_keys``). Not required: the calibration (it starts at the
  identity, alpha = beta = 0, or with MODEL.DISALIGN.MARGIN_INIT "prior" at the
  logit-adjustment margin), the model's non-persistent buffers (``pixel_mean``/``pixel_std``
  and the anchors, computed from the config; older detectron2 checkpoints hold them) and
  BatchNorm's ``num_batches_tracked`` counters. A correct load logs one line saying so.

Stage 1 (``calibration_stage=False``) loads as detectron2 does, e.g. the ImageNet backbone
``R-50.pkl`` into a detector. A ``MODEL.WEIGHTS`` URL (``detectron2://``, ``https://``) is logged
with the local file it resolved to: iopath's download cache keys a file by the URL's path, not
its host.

Checkpoint files survive a full disk and record their recipe:

- ``save`` writes each checkpoint, and ``tag_last_checkpoint`` the ``last_checkpoint`` pointer,
  to a temporary file in OUTPUT_DIR that is renamed onto its name when complete
  (``os.replace``): a file of that name is always whole, old or new. A failed write (disk
  full) stops the run with an error saying that the previous checkpoint and the pointer are
  intact. Every checkpoint holds the run's recipe (``disalign_recipe``: every
  MODEL.DISALIGN key, MODEL.ROI_HEADS.NUM_CLASSES, DATASETS.TRAIN, the sha256 of
  FREQUENCY_FILE), which ``--resume`` compares (``disalign_det.engine``).
- ``--resume`` loads the checkpoint ``last_checkpoint`` names; when that file is empty, names
  a missing or truncated file, or is missing while checkpoints exist, it loads the newest
  complete ``model_*.pth`` of OUTPUT_DIR instead and logs why (``resolve_resume_checkpoint``).
  Nothing on disk is changed for that; the next checkpoint rewrites the pointer.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union
from urllib.parse import urlparse

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from torch import nn

from disalign_core import (
    HASH_SUFFIX,
    ResumeChoice,
    Stage1CheckpointMismatch,
    atomic_write,
    check_stage1_keys,
    describe_local_file,
    file_sha256,
    freeze_all_but_calibration,
    is_calibration_key,
    is_url,
    plain_value,
)
from disalign_core import resolve_resume_checkpoint as resolve_checkpoint_in

from .modeling.rpn import DisAlignRPN

__all__ = [
    "DisAlignCheckpointer",
    "check_box_predictor_shapes",
    "disalign_recipe",
    "freeze_for_calibration",
    "read_checkpoint_recipe",
    "resolve_resume_checkpoint",
]

logger = logging.getLogger(__name__)

# Parameters of a box predictor whose shape depends on the number of classes.
_CLASS_DEPENDENT = ("cls_score.weight", "cls_score.bias", "bbox_pred.weight", "bbox_pred.bias")
# How many keys or shapes a message lists.
_SHOWN = 5
# The checkpoint key of the run's recipe, and the pointer file to the last checkpoint.
RECIPE_KEY = "disalign_recipe"
POINTER = "last_checkpoint"
# detectron2's checkpoint names: model_{iter:07d}.pth and model_final.pth (the newest).
_CHECKPOINT_NAME = re.compile(r"^model_(\d+|final)\.pth$")


def _checkpoint_order(name: str) -> Optional[float]:
    """A file name's place among OUTPUT_DIR's checkpoints (model_final.pth last), or None."""
    match = _CHECKPOINT_NAME.match(name)
    if not match:
        return None
    return float("inf") if match.group(1) == "final" else int(match.group(1))


def resolve_resume_checkpoint(save_dir: str) -> ResumeChoice:
    """The checkpoint ``--resume`` loads from ``save_dir`` (OUTPUT_DIR): the one
    ``last_checkpoint`` names when it is complete, otherwise the newest complete
    ``model_*.pth`` (core ``resolve_resume_checkpoint``)."""
    return resolve_checkpoint_in(
        os.path.join(save_dir, POINTER),
        lambda name: os.path.join(save_dir, name),
        _checkpoint_order,
    )


def check_box_predictor_shapes(
    model: nn.Module, state_dict: dict, source: str = "checkpoint"
) -> None:
    """Raise if ``state_dict`` holds a box classifier/regressor of another shape than ``model``'s.

    Args:
        model (nn.Module): the model to load into (not DDP-wrapped).
        state_dict (dict): name -> tensor or ndarray, possibly with a "module." prefix.
        source (str): name of the checkpoint, for the message.

    Raises:
        ValueError: naming the parameter and both shapes.
    """
    own = model.state_dict()
    for name, module in model.named_modules():
        if not isinstance(module, FastRCNNOutputLayers):
            continue
        for suffix in _CLASS_DEPENDENT:
            key = f"{name}.{suffix}"
            theirs = state_dict.get(key, state_dict.get("module." + key))
            if key not in own or theirs is None:
                continue
            if tuple(theirs.shape) != tuple(own[key].shape):
                raise ValueError(
                    f"{source} does not fit the model: {key} has shape {tuple(theirs.shape)} "
                    f"in the checkpoint but {tuple(own[key].shape)} in the model "
                    f"({module.num_classes} foreground classes, MODEL.ROI_HEADS.NUM_CLASSES). "
                    "Use the stage-1 checkpoint of a model with the same classes."
                )


def _strip_module_prefix(keys: Sequence[str]) -> set:
    """The keys as fvcore matches them: "module." removed when every key has it (DDP)."""
    keys = list(keys)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :] for k in keys}
    return set(keys)


def _classifier_type_error(model: nn.Module, checkpoint_keys: set) -> Optional[str]:
    """The message for a linear classifier loaded into a cosine one or the reverse, or None.

    A linear predictor has ``cls_score.weight/bias``; the cosine one ``cls_score.weight`` (no
    bias) and the scale ``cls_scale``."""
    own = set(model.state_dict())
    for name, module in model.named_modules():
        if not isinstance(module, FastRCNNOutputLayers):
            continue
        scale, bias = f"{name}.cls_scale", f"{name}.cls_score.bias"
        if scale in own and bias in checkpoint_keys and scale not in checkpoint_keys:
            return (
                "the checkpoint has a linear classifier (cls_score.weight/bias) while the config "
                'asks MODEL.DISALIGN.CLASSIFIER "cosine"; the zoo models are linear; use the '
                "linear stage-2 config, or train a cosine stage 1 with our *_cos.yaml first."
            )
        if bias in own and scale in checkpoint_keys and bias not in checkpoint_keys:
            return (
                "the checkpoint has a cosine classifier (cls_score.weight and cls_scale, no "
                'bias) while the config asks MODEL.DISALIGN.CLASSIFIER "linear"; use the cosine '
                "(*_cos.yaml) config of that stage-1 model."
            )
    return None


def _not_required(model: nn.Module) -> set:
    """State-dict names a stage-1 checkpoint need not hold, and may hold without harm: the
    model's non-persistent buffers (pixel_mean/std, anchors: computed from the config)."""
    persistent = set(model.state_dict())
    return {name for name, _ in model.named_buffers() if name not in persistent}


def _is_counter(key: str) -> bool:
    # BatchNorm's batch counter: not used by frozen or eval-mode normalisation.
    return key.endswith("num_batches_tracked")


# MODEL.DISALIGN keys of our extensions, and DATASETS.HELDOUT's, with their defaults (config.py).
_EXTENSION_DEFAULTS = {
    "MARGIN_INIT": "zero",
    "PRIOR_TAU": 1.0,
    "POSTHOC": {"TYPE": "", "TAU": 1.0},
}
_HELDOUT_DEFAULTS = {"FRACTION": 0.0, "PART": "stage1", "SEED": 0}


def disalign_recipe(cfg: Union[CfgNode, Mapping]) -> Dict[str, Any]:
    """The keys that define a run's DisAlign recipe: every ``MODEL.DISALIGN`` key (rho, the
    frequency source, the calibration switches, ...), ``DATASETS.HELDOUT`` (which images are
    trained on), ``MODEL.ROI_HEADS.NUM_CLASSES``, ``DATASETS.TRAIN`` (the frequencies' source
    when FREQUENCY_FILE is empty) and the sha256 of FREQUENCY_FILE when it names a file. The
    keys of our extensions (MARGIN_INIT, PRIOR_TAU, POSTHOC, DATASETS.HELDOUT) appear only
    when they differ from their defaults.

    Args:
        cfg: a detectron2 config, or the dict of one read from a yaml file.

    Returns:
        dict: {full key: plain value}.
    """
    model = cfg.get("MODEL", {}) or {}
    disalign = model.get("DISALIGN", {}) or {}
    datasets = cfg.get("DATASETS", {}) or {}
    recipe = {
        f"MODEL.DISALIGN.{k}": plain_value(v)
        for k, v in disalign.items()
        if k not in _EXTENSION_DEFAULTS
    }
    # Keys added after checkpoints with recipes were written: recorded only when they differ
    # from their default (which is the behaviour before them), so that a checkpoint without
    # them still resumes under a config that leaves them at it.
    heldout = datasets.get("HELDOUT", {}) or {}
    for key, default in _EXTENSION_DEFAULTS.items():
        value = plain_value(disalign.get(key, default))
        if value != default:
            recipe[f"MODEL.DISALIGN.{key}"] = value
    for key, default in _HELDOUT_DEFAULTS.items():
        value = plain_value(heldout.get(key, default))
        if value != default:
            recipe[f"DATASETS.HELDOUT.{key}"] = value
    recipe["MODEL.ROI_HEADS.NUM_CLASSES"] = plain_value(
        (model.get("ROI_HEADS", {}) or {}).get("NUM_CLASSES")
    )
    recipe["DATASETS.TRAIN"] = plain_value(datasets.get("TRAIN"))
    frequency_file = disalign.get("FREQUENCY_FILE")
    if frequency_file and os.path.isfile(frequency_file):
        recipe["MODEL.DISALIGN.FREQUENCY_FILE" + HASH_SUFFIX] = file_sha256(frequency_file)
    return recipe


def read_checkpoint_recipe(path: str) -> Optional[Dict[str, Any]]:
    """The recipe stored in a checkpoint by ``DisAlignCheckpointer.save`` (None: none stored,
    or the file cannot be read; its load says why). Memory-maps the file: no tensor is read."""
    try:
        data = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # noqa: BLE001  unreadable here; the checkpointer's load reports it
        return None
    recipe = data.get(RECIPE_KEY) if isinstance(data, dict) else None
    return dict(recipe) if isinstance(recipe, Mapping) else None


class DisAlignCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that refuses a box predictor of the wrong class count or
    classifier type; in the calibration stage, refuses a ``MODEL.WEIGHTS`` checkpoint that does
    not hold every non-calibration weight of the model; logs (instead of warning about) the
    calibration parameters that start at the identity; logs the local file of a URL; and turns
    an unreadable checkpoint file into an error that names the file and where it came from.
    Saves atomically with the run's recipe, and resumes from the newest complete checkpoint
    when ``last_checkpoint`` is broken (module docstring).

    Args:
        model, save_dir, **checkpointables: as ``DetectionCheckpointer``.
        calibration_stage (bool): the model is a stage-2 model (``MODEL.DISALIGN.FREEZE``):
            weights loaded from ``MODEL.WEIGHTS`` (or with ``load``) must cover it.
        recipe (dict, optional): ``disalign_recipe(cfg)``, stored in every checkpoint saved.
    """

    # Which config entry named the file being loaded (None: a direct ``load``); set by
    # resume_or_load, for the messages.
    _source_key = None
    # The path or URL being loaded, as the user gave it, and the local file of a URL.
    _loading = None
    _local_file = None

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        calibration_stage: bool = False,
        recipe: Optional[Dict[str, Any]] = None,
        **kwargs,
    ):
        super().__init__(model, save_dir, **kwargs)
        self.calibration_stage = calibration_stage
        self.recipe = recipe

    def _local(self) -> bool:
        # OUTPUT_DIR on a local file system (not an iopath URL such as manifold://).
        return bool(self.save_dir) and "://" not in self.save_dir

    def resume_choice(self) -> ResumeChoice:
        """What ``--resume`` loads (``resolve_resume_checkpoint`` of OUTPUT_DIR)."""
        return resolve_resume_checkpoint(self.save_dir)

    def has_checkpoint(self) -> bool:
        if not self._local():
            return super().has_checkpoint()
        choice = self.resume_choice()
        return choice.path is not None or choice.pointer is not None

    def get_checkpoint_file(self) -> str:
        if not self._local():
            return super().get_checkpoint_file()
        return self.resume_choice().path or os.path.join(self.save_dir, "")

    def save(self, name: str, **kwargs: Any) -> None:
        """fvcore's ``save`` plus the recipe (``disalign_recipe``), written atomically: a
        temporary file in OUTPUT_DIR renamed onto ``<name>.pth`` when complete, then
        ``last_checkpoint`` the same way. A failed write leaves both files as they were."""
        if self.recipe is not None:
            kwargs.setdefault(RECIPE_KEY, self.recipe)
        if not self.save_dir or not self.save_to_disk or not self._local():
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        pointer_file = os.path.join(self.save_dir, POINTER)
        previous = None
        if os.path.isfile(pointer_file):
            with open(pointer_file, encoding="utf-8", errors="replace") as f:
                previous = f.read().strip()
        try:
            atomic_write(save_file, lambda f: torch.save(data, f))
            self.tag_last_checkpoint(basename)
        except OSError as e:
            kept = (
                f"{pointer_file} still names {previous!r}, which is intact"
                if previous
                else f"{pointer_file} is as it was"
            )
            raise OSError(
                e.errno,
                f"could not write the checkpoint {save_file} or {pointer_file} "
                f"({type(e).__name__}: {e}); nothing was half-written: {kept}. Fix: free disk "
                "space, then run the same command with --resume",
            ) from e

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not self._local():
            return super().tag_last_checkpoint(last_filename_basename)
        atomic_write(os.path.join(self.save_dir, POINTER), last_filename_basename)

    def resume_or_load(self, path: str, *, resume: bool = True):
        if resume and self._local():
            choice = self.resume_choice()
            tag = os.path.join(self.save_dir, POINTER)
            if choice.fallback:
                # fvcore's logger: default_setup sends it to stdout and OUTPUT_DIR/log.txt
                self.logger.warning(f"DisAlign --resume: {choice.fallback}")
            elif choice.pointer is not None and (
                choice.path is None or not os.path.isfile(choice.path)
            ):
                # the pointer names nothing usable and OUTPUT_DIR has no complete checkpoint
                raise ValueError(
                    f"{tag!r} (OUTPUT_DIR/last_checkpoint, --resume) names "
                    f"{choice.pointer!r}, which is not a file in OUTPUT_DIR, and OUTPUT_DIR "
                    "holds no complete model_*.pth to resume from instead. Write the name of a "
                    "complete model_*.pth of OUTPUT_DIR into it, or start again without "
                    "--resume."
                )
        self._source_key = (
            "last_checkpoint" if resume and self.has_checkpoint() else "MODEL.WEIGHTS"
        )
        try:
            return super().resume_or_load(path, resume=resume)
        finally:
            self._source_key = None

    def load(self, path: str, *args, **kwargs):
        self._loading, self._local_file = path, None
        if path and is_url(path):
            # As DetectionCheckpointer.load resolves it (a query such as
            # ?matching_heuristics=True is not part of the file); the second resolution there
            # finds the same file in iopath's cache.
            url = urlparse(path)._replace(query="").geturl()
            try:
                self._local_file = self.path_manager.get_local_path(url)
            except OSError as e:  # urllib's URLError/HTTPError, an empty download
                raise OSError(
                    f"cannot download {path} ({self._config_key()}): {e}. Download it where "
                    f"there is network and set {self._config_key()} to the local file."
                ) from None
            logger.info(
                f"{self._config_key()} {path} is a URL: reading the local file "
                f"{describe_local_file(self._local_file)}. iopath's download cache "
                "($FVCORE_CACHE, default ~/.torch/iopath_cache) keys files by the URL's path, "
                "not its host, so a file of the same path from another server is not "
                "downloaded again: delete that file to download it again."
            )
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._loading = self._local_file = None

    def _config_key(self) -> str:
        if self._source_key == "last_checkpoint":
            return "OUTPUT_DIR/last_checkpoint (--resume)"
        if self._source_key == "MODEL.WEIGHTS":
            return "MODEL.WEIGHTS"
        return "DisAlignCheckpointer.load"

    def _checkpoint_name(self) -> str:
        name = str(self._loading)
        return f"{name} (local file {self._local_file})" if self._local_file else name

    def _load_file(self, filename: str):
        try:
            return super()._load_file(filename)
        except (EOFError, KeyError, pickle.UnpicklingError, RuntimeError) as e:
            # torch's own messages say "Ran out of input", name zip internals, or advise
            # weights_only=False, which would run whatever code an untrusted file carries.
            first_line = (str(e).strip().splitlines() or [""])[0]
            if self._source_key == "MODEL.WEIGHTS":
                source = "MODEL.WEIGHTS"
                fix = (
                    "Set MODEL.WEIGHTS to a complete checkpoint (for the calibration stage, the "
                    "stage-1 model_final.pth); copy or train it again if this one is damaged."
                )
            elif self._source_key == "last_checkpoint":
                source = f"named by last_checkpoint in OUTPUT_DIR {self.save_dir!r}, --resume"
                fix = (
                    "It was probably cut off while being written. Delete it and write the name "
                    "of an earlier complete model_*.pth of OUTPUT_DIR into OUTPUT_DIR/"
                    "last_checkpoint, or start again without --resume."
                )
            else:
                source, fix = "checkpoint", "Load a complete checkpoint."
            raise ValueError(
                f"cannot read {filename!r} ({source}): the file is empty, truncated or not a "
                f"checkpoint ({type(e).__name__}: {first_line}). {fix} Do not load it with "
                "torch.load(weights_only=False): that runs any code the file contains."
            ) from None

    def _guarded(self) -> bool:
        """Whether this load must cover the stage-2 model (not --resume of the run's own)."""
        return self.calibration_stage and self._source_key != "last_checkpoint"

    def _load_model(self, checkpoint):
        guarded = self._guarded()
        origin = f"{self._checkpoint_name()} ({self._config_key()})"
        error = Stage1CheckpointMismatch if guarded else ValueError
        check_box_predictor_shapes(self.model, checkpoint["model"], f"the checkpoint {origin}")
        theirs = _strip_module_prefix(checkpoint["model"])
        wrong_type = _classifier_type_error(self.model, theirs)
        if wrong_type:
            raise error(f"{origin}: {wrong_type}")
        has_predictor = any("box_predictor." in k for k in theirs)
        incompatible = super()._load_model(checkpoint)
        if guarded:
            self._check_stage1(incompatible)
            return incompatible
        # A detector checkpoint (one with a box predictor; an ImageNet backbone has none) whose
        # predictor parameters differ in name would leave part of the classifier untrained:
        # an error, not a warning.
        mismatched = [
            k
            for k in incompatible.missing_keys + incompatible.unexpected_keys
            if "box_predictor." in k and not is_calibration_key(k)
        ]
        if has_predictor and mismatched:
            raise ValueError(
                f"the box predictor of the checkpoint {origin} does not fit the model: "
                f"{', '.join(mismatched[:_SHOWN * 2])} missing or unexpected. Is it the "
                "checkpoint of this config's architecture (Mask R-CNN / Cascade R-CNN), and is "
                "MODEL.DISALIGN.CLASSIFIER (linear/cosine) the one of the stage-1 model?"
            )
        fresh = [k for k in incompatible.missing_keys if is_calibration_key(k)]
        if fresh:
            for k in fresh:
                incompatible.missing_keys.remove(k)
            logger.info(
                f"DisAlign calibration parameters not in the checkpoint start "
                f"{self._calibration_start()}: {', '.join(fresh)}"
            )
        return incompatible

    def _calibration_start(self) -> str:
        """Where the model's calibrations start, for the log of a load that does not set them."""
        inits = {getattr(m, "margin_init", None) for m in self.model.modules()}
        if "prior_offset" in inits:
            return (
                "at the prior start (alpha = beta = 0 plus the fixed logit-adjustment offset, "
                "MODEL.DISALIGN.MARGIN_INIT 'prior_offset')"
            )
        if "prior" in inits:
            return (
                "at the prior start (alpha = 0, beta = the logit-adjustment margin, "
                "MODEL.DISALIGN.MARGIN_INIT 'prior')"
            )
        return "at the identity (alpha = beta = 0)"

    def _check_stage1(self, incompatible) -> None:
        """The stage-2 rule on the outcome of the load (``disalign_core.check_stage1_keys``);
        on success, logs what is new and leaves nothing for fvcore to warn about."""
        key, name = self._config_key(), self._checkpoint_name()
        if incompatible.incorrect_shapes:
            shown = "; ".join(
                f"{k}: {tuple(theirs)} in the checkpoint, {tuple(own)} in the model"
                for k, theirs, own in incompatible.incorrect_shapes[:_SHOWN]
            )
            more = len(incompatible.incorrect_shapes) - _SHOWN
            raise Stage1CheckpointMismatch(
                f"the stage-1 checkpoint {name} ({key}) does not fit the stage-2 model: "
                f"{len(incompatible.incorrect_shapes)} weights have another shape ({shown}"
                f"{f'; {more} more' if more > 0 else ''}). Likely cause: another number of "
                "classes (MODEL.ROI_HEADS.NUM_CLASSES), another head or another backbone width. "
                f"Fix: set {key} to the stage-1 checkpoint of this config's model."
            )
        not_required = _not_required(self.model)
        ignored = [
            k
            for k in incompatible.missing_keys + incompatible.unexpected_keys
            if k in not_required or _is_counter(k)
        ]
        missing = [k for k in incompatible.missing_keys if k not in ignored]
        unexpected = [k for k in incompatible.unexpected_keys if k not in ignored]
        new = check_stage1_keys(
            missing,
            unexpected,
            checkpoint=name,
            config_key=key,
            model_keys=len(self.model.state_dict()),
        )
        # Nothing left for fvcore's _log_incompatible_keys to warn about.
        incompatible.missing_keys.clear()
        incompatible.unexpected_keys.clear()
        loaded = len(self.model.state_dict()) - len(new)
        logger.info(
            f"DisAlign stage 2: loaded all {loaded} parameters and buffers of the model but the "
            f"calibration from {name} ({key}); new, {self._calibration_start()}: "
            f"{', '.join(new) if new else 'none'}"
            + (
                f"; not needed from the checkpoint: {', '.join(sorted(set(ignored)))} (computed "
                "from the config, or BatchNorm counters)"
                if ignored
                else ""
            )
        )


def freeze_for_calibration(model: nn.Module) -> List[str]:
    """Freeze everything but the DisAlign calibration(s) of ``model``.

    Frozen parts get no gradient, and their BatchNorm/InstanceNorm/dropout layers stay in eval
    mode after ``model.train()`` (running statistics fixed). The frozen modules themselves
    follow ``model.train()``: a frozen ``DisAlignRPN`` proposes with the training-time counts
    while the detector trains (as the authors' stage 2), without labelling anchors or computing
    losses; the ROI heads skip the frozen mask/keypoint heads' losses.

    Returns:
        list[str]: the names of the parameters left trainable.
    """
    try:
        trainable = freeze_all_but_calibration(model, lock="norm")
    except ValueError as err:
        raise ValueError(
            f"{err} Nothing to train in stage 2 (MODEL.DISALIGN.FREEZE True). Fix: set "
            "MODEL.DISALIGN.CALIBRATION True with MODEL.DISALIGN.MAGNITUDE or MARGIN, and "
            "MODEL.ROI_HEADS.NAME to a DisAlign ROI head (the Base-DisAlign configs do), or "
            "MODEL.DISALIGN.FREEZE False to train the plain model"
        ) from None
    logger.info(f"DisAlign calibration stage: training only {trainable}")
    rpn = getattr(model, "proposal_generator", None)
    if isinstance(rpn, RPN) and not isinstance(rpn, DisAlignRPN):
        logger.warning(
            f"MODEL.PROPOSAL_GENERATOR.NAME is {type(rpn).__name__}: the frozen RPN still "
            "labels anchors and computes its losses in every iteration, for nothing (they "
            "train no parameter). Use 'DisAlignRPN' (the Base-DisAlign configs do) to skip them."
        )
    return trainable
