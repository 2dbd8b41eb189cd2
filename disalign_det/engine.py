"""Training and evaluation with detectron2's ``DefaultTrainer``: what
``projects/DisAlign/train_net.py`` runs, importable by tools, benchmarks and tests.

Stage 1 (joint learning) and stage 2 (distribution calibration) are the same code with
different configs; a stage-2 config sets MODEL.WEIGHTS to the stage-1 checkpoint and
MODEL.DISALIGN.FREEZE, CALIBRATION and REWEIGHT to True.

    from disalign_det.engine import argument_parser, main
    results = main(argument_parser().parse_args(["--config-file", yaml, "OUTPUT_DIR", out]))

``config_hooks`` (of ``setup`` and ``main``) are functions that add config keys other than
detectron2's and ``MODEL.DISALIGN``'s before the config file is merged, as detectron2 projects
call their ``add_*_config``; e.g. ``disalign_demo.det.add_tiny_backbone_config`` for the demo's
tiny CPU backbone (``train_net.py --demo``).

``--resume`` continues only the recipe the checkpoint was trained with: every checkpoint holds
its recipe (``disalign_recipe``: every MODEL.DISALIGN key, MODEL.ROI_HEADS.NUM_CLASSES,
DATASETS.TRAIN, the sha256 of FREQUENCY_FILE), and ``setup`` compares it with the config before
anything is written; a difference is an error naming each key with both values, unless
``--allow-recipe-change`` is given.

Options beyond the paper (config.py): ``MODEL.DISALIGN.POSTHOC`` is for ``--eval-only`` only
(training with it is refused before anything is written); ``DATASETS.HELDOUT`` makes the train
loader read one part of a held-out calibration split (``disalign_det.data``). OUTPUT_DIR/config.yaml keeps the config of the run's first
start: detectron2's ``default_setup`` rewrites it on every start, so with ``--resume`` or
``--eval-only`` the file is put back and this start's config is written beside it as
``config.resume-<time>.yaml`` (``config.eval-<time>.yaml``) when the two differ.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
import weakref
from typing import Callable, Iterator, Optional, Sequence

import yaml
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup
from detectron2.engine import defaults as d2_defaults
from detectron2.evaluation import COCOEvaluator, LVISEvaluator, verify_results
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.utils import comm
from torch import nn

from disalign_core import NOT_SET, atomic_write, is_complete_checkpoint, recipe_differences

from .calibration_stage import (
    DisAlignCheckpointer,
    disalign_recipe,
    freeze_for_calibration,
    read_checkpoint_recipe,
    resolve_resume_checkpoint,
)
from .config import add_disalign_config
from .data import (
    build_test_loader,
    build_train_loader,
    check_dataset_images,
    check_heldout_config,
    image_check_settings,
    register_disalign_instances,
)
from .modeling import DisAlignFastRCNNOutputLayers

__all__ = [
    "ConfigHook",
    "Trainer",
    "argument_parser",
    "check_images",
    "check_resume_recipe",
    "cpu_aware_ddp",
    "main",
    "register_datasets",
    "setup",
    "write_class_weights",
]

ConfigHook = Callable[[CfgNode], None]

# A child of detectron2's logger: default_setup sends it to stdout and OUTPUT_DIR/log.txt.
logger = logging.getLogger("detectron2.disalign")


@contextlib.contextmanager
def cpu_aware_ddp() -> Iterator[None]:
    """Within this block, detectron2's ``create_ddp_model`` passes no ``device_ids`` for a CPU
    model (it passes ``[local rank]``, which DistributedDataParallel rejects for one), so
    ``--num-gpus N`` also runs on CPU (gloo). GPU models are wrapped as detectron2 does.

    ``DefaultTrainer.__init__`` looks ``create_ddp_model`` up in ``detectron2.engine.defaults``
    when it runs, so the name is replaced there for the block only and restored after it.
    Serves users who run ``train_net.py --num-gpus N`` on a machine without GPUs (detectron2's
    ``launch`` starts gloo processes there) as well as this repository's tests; on GPUs it
    changes nothing.
    """
    original = d2_defaults.create_ddp_model

    def create_ddp_model(model: nn.Module, **kwargs):
        if next(model.parameters()).device.type == "cpu":
            kwargs.setdefault("device_ids", None)
        return original(model, **kwargs)

    d2_defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = original


class Trainer(DefaultTrainer):
    """DefaultTrainer with LVIS evaluation, the calibration stage's freezing, a checkpointer
    that refuses a stage-1 checkpoint of another class count, classifier type or architecture
    (``DisAlignCheckpointer``), and DDP of CPU models."""

    def __init__(self, cfg: CfgNode):
        with cpu_aware_ddp():
            super().__init__(cfg)

    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        model = super().build_model(cfg)
        if cfg.MODEL.DISALIGN.FREEZE:
            # Before the optimizer is built, so that it only holds the calibration parameters.
            freeze_for_calibration(model)
        return model

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        # detectron2's loader; an image it cannot read is an error naming the file (data.py).
        return build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        evaluator_type = MetadataCatalog.get(dataset_name).evaluator_type
        if evaluator_type == "lvis":
            return LVISEvaluator(
                dataset_name,
                output_dir=output_folder,
                max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
            )
        if evaluator_type == "coco":
            # use_fast_impl needs detectron2's compiled ops, which may be absent.
            return COCOEvaluator(
                dataset_name,
                output_dir=output_folder,
                max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
                use_fast_impl=False,
            )
        raise NotImplementedError(
            f"no evaluator for dataset {dataset_name!r} of evaluator_type {evaluator_type!r}"
        )

    def build_hooks(self):
        # DefaultTrainer.__init__ creates a plain DetectionCheckpointer just before calling
        # build_hooks; replace it here so that loading and periodic saving both use ours.
        self.checkpointer = DisAlignCheckpointer(
            self.checkpointer.model,
            self.cfg.OUTPUT_DIR,
            calibration_stage=self.cfg.MODEL.DISALIGN.FREEZE,
            recipe=disalign_recipe(self.cfg),
            trainer=weakref.proxy(self),
        )
        return super().build_hooks()


def argument_parser() -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser`` with ``--register``, ``--write-class-weights``
    and ``--allow-recipe-change``."""
    parser = default_argument_parser()
    parser.add_argument(
        "--register",
        nargs=3,
        action="append",
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register an LVIS-format dataset under NAME before training (repeatable)",
    )
    parser.add_argument(
        "--write-class-weights",
        action="store_true",
        help="write this process's GRW class weights to OUTPUT_DIR/class_weights_rank{r}.json",
    )
    parser.add_argument(
        "--allow-recipe-change",
        action="store_true",
        help="with --resume: continue although the recipe (MODEL.DISALIGN.*, "
        "MODEL.ROI_HEADS.NUM_CLASSES, DATASETS.TRAIN) differs from the checkpoint's",
    )
    return parser


def register_datasets(specs: Optional[Sequence[Sequence[str]]]) -> None:
    """Register each (name, json_file, image_root) (``--register``) unless that name is
    already registered; see ``register_disalign_instances``."""
    for name, json_file, image_root in specs or []:
        if name not in DatasetCatalog.list():
            register_disalign_instances(name, json_file, image_root)


# The repository's own CPU configs (configs/detectron2/demo/, quick_schedules/) use the demo's
# tiny backbone; only an error about its keys or names points there.
_DEMO_KEY, _DEMO_BACKBONE = "MODEL.TINY_BACKBONE", "build_disalign_tiny"
_DEMO_HINT = (
    " The configs of configs/detectron2/demo/ and quick_schedules/ use the demo's tiny CPU "
    "backbone and its MODEL.TINY_BACKBONE keys: run them with train_net.py --demo (or pass "
    "disalign_demo.det.add_tiny_backbone_config in config_hooks)."
)


def _demo_hint(message: str) -> str:
    """``_DEMO_HINT`` when ``message`` is about the demo's backbone, else nothing."""
    return _DEMO_HINT if (_DEMO_KEY in message or _DEMO_BACKBONE in message) else ""


def _merge(merge: Callable[[], None], source: str) -> None:
    """Run ``merge`` (a merge into a config); a key the config does not have is an error
    naming ``source`` and the config functions that add keys."""
    try:
        merge()
    except (KeyError, AssertionError) as e:
        # yacs: KeyError("Non-existent config key: ...") from a file,
        # AssertionError("Non-existent key: ...") from a list of options
        message = str(e.args[0]) if e.args else ""
        if not message.startswith("Non-existent"):
            raise
        raise ValueError(
            f"{source}: {message}. The config has detectron2's keys and MODEL.DISALIGN.* "
            f"(add_disalign_config); other keys need their add_*_config first.{_demo_hint(message)}"
        ) from None


def _check_backbone_registered(cfg: CfgNode, config_file: str) -> None:
    """Raise now, naming the key and the file, if MODEL.BACKBONE.NAME is not registered
    (detectron2 would raise only when building the model, without saying where it came from)."""
    name = cfg.MODEL.BACKBONE.NAME
    if name not in BACKBONE_REGISTRY:
        raise ValueError(
            f"MODEL.BACKBONE.NAME {name!r} (--config-file {config_file} and the command-line "
            "options) is not in detectron2's BACKBONE_REGISTRY: import the module that "
            f"registers it before training.{_demo_hint(name)}"
        )


def setup(args: argparse.Namespace, config_hooks: Sequence[ConfigHook] = ()) -> CfgNode:
    """Create the config, in detectron2's order, and do detectron2's basic setups.

    Args:
        args: parsed by ``argument_parser()``.
        config_hooks: functions adding config keys, called after ``add_disalign_config``.
    """
    cfg = get_cfg()
    add_disalign_config(cfg)
    for hook in config_hooks:
        hook(cfg)
    _merge(lambda: cfg.merge_from_file(args.config_file), f"--config-file {args.config_file}")
    _merge(lambda: cfg.merge_from_list(args.opts), "command-line options")
    _check_backbone_registered(cfg, args.config_file)
    posthoc = cfg.MODEL.DISALIGN.POSTHOC.TYPE
    if posthoc and not args.eval_only:
        # Before anything is written: a training-free calibration has nothing to train.
        raise ValueError(
            f"MODEL.DISALIGN.POSTHOC.TYPE={posthoc!r} is a training-free calibration of a "
            "stage-1 model: evaluate it with --eval-only MODEL.WEIGHTS <stage-1 model>. To "
            "train (MODEL.DISALIGN.CALIBRATION / REWEIGHT, stage 2), set "
            "MODEL.DISALIGN.POSTHOC.TYPE '' (DisAlign's margin can start at the same "
            "logit-adjustment solution with MODEL.DISALIGN.MARGIN_INIT 'prior')"
        )
    if not args.eval_only:
        check_heldout_config(cfg)  # a bad DATASETS.HELDOUT fails before anything is written
    if args.eval_only:
        # The GRW class weights only enter the loss; without this, evaluating a stage-2
        # model would need (and count) the training annotations.
        cfg.MODEL.DISALIGN.REWEIGHT = False
    cfg.freeze()
    changes = []
    if args.resume and not args.eval_only:
        # Before default_setup: a refused resume writes nothing into OUTPUT_DIR.
        changes = check_resume_recipe(cfg, allow=getattr(args, "allow_recipe_change", False))
    _default_setup_keeping_first_config(cfg, args)
    if changes:
        logger.warning(
            "DisAlign --resume with --allow-recipe-change: the recipe changes: "
            f"{_listed(changes)}. The run was trained with the checkpoint's values so far, "
            "with the new ones from now on."
        )
    return cfg


def _show(value) -> str:
    text = value if value == NOT_SET else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _listed(changes) -> str:
    return "; ".join(f"{k}: {_show(a)} in the checkpoint, {_show(b)} now" for k, a, b in changes)


def _recipe_of_config_file(path: str) -> Optional[dict]:
    """The recipe of a config.yaml that detectron2 wrote (None if it cannot be read)."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None
    return disalign_recipe(data) if isinstance(data, dict) else None


def check_resume_recipe(cfg: CfgNode, allow: bool = False) -> list:
    """Compare the recipe of ``cfg`` (``disalign_recipe``) with the recipe of the checkpoint
    ``--resume`` loads from OUTPUT_DIR (stored in it by ``DisAlignCheckpointer``; for a
    checkpoint without one, read from OUTPUT_DIR/config.yaml).

    Args:
        cfg: the run's config.
        allow: return the differences instead of raising (``--allow-recipe-change``).

    Returns:
        list of (key, checkpoint's value, config's value); empty when nothing differs or there
        is nothing to resume.

    Raises:
        ValueError: the recipes differ and ``allow`` is False; names each key and both values.
    """
    out = cfg.OUTPUT_DIR
    if not out or "://" in out:
        return []
    choice = resolve_resume_checkpoint(out)
    if choice.path is None or not is_complete_checkpoint(choice.path):
        return []  # nothing to resume, or a file whose load fails and says why
    old, source = read_checkpoint_recipe(choice.path), choice.path
    if old is None:
        yaml_file = os.path.join(out, "config.yaml")
        old = _recipe_of_config_file(yaml_file)
        source = f"{yaml_file} (the checkpoint {choice.path} holds no recipe)"
    if old is None:
        return []
    changes = recipe_differences(old, disalign_recipe(cfg))
    if changes and not allow:
        raise ValueError(
            f"--resume in OUTPUT_DIR {out!r}: the config trains another recipe than the one "
            f"the checkpoint was trained with (from {source}): {_listed(changes)}. Resuming "
            "would silently train the rest of the run with the new values, and neither its "
            "checkpoints nor config.yaml would say how it was trained. Fix: resume with the "
            "checkpoint's values (drop the changed options), or train the new recipe in "
            "another OUTPUT_DIR; to change this run's recipe on purpose, add "
            "--allow-recipe-change (OUTPUT_DIR/config.yaml keeps the first config, this run's "
            "is written beside it). Nothing was written."
        )
    return changes


def _default_setup_keeping_first_config(cfg: CfgNode, args: argparse.Namespace) -> None:
    """detectron2's ``default_setup``, which rewrites OUTPUT_DIR/config.yaml on every start;
    with --resume or --eval-only the first config is put back and this start's config, if it
    differs, is written beside it (config.resume-<time>.yaml, config.eval-<time>.yaml)."""
    path = os.path.join(cfg.OUTPUT_DIR, "config.yaml") if cfg.OUTPUT_DIR else ""
    first = None
    if (args.resume or args.eval_only) and comm.is_main_process() and os.path.isfile(path):
        with open(path, "rb") as f:
            first = f.read()
    default_setup(cfg, args)
    if first is None or not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        now = f.read()
    if now == first:
        return
    kind = "eval" if args.eval_only else "resume"
    stem = os.path.join(cfg.OUTPUT_DIR, f"config.{kind}-{time.strftime('%Y%m%d_%H%M%S')}")
    this_start, n = f"{stem}.yaml", 1
    while os.path.exists(this_start):
        this_start, n = f"{stem}-{n}.yaml", n + 1
    atomic_write(this_start, now)
    atomic_write(path, first)
    logger.info(
        f"{path} keeps the config of the run's first start; this start's config is {this_start}"
    )


def check_images(cfg: CfgNode, eval_only: bool) -> None:
    """Raise if an image of DATASETS.TRAIN (unless ``eval_only``) or DATASETS.TEST is not on
    disk, or is damaged, now rather than when the loader reaches it.

    Every image must exist; its contents are checked as ``DISALIGN_CHECK_IMAGES`` says:
    ``headers`` (default; format, size against the json's, complete end of each JPEG/PNG),
    ``full`` (every image decoded) or ``exists``; ``DISALIGN_CHECK_IMAGES_SAMPLE=N`` checks the
    contents of N images per dataset. The processes of a distributed run split the images.
    """
    to_check = [("DATASETS.TEST", cfg.DATASETS.TEST)]
    if not eval_only:
        to_check.insert(0, ("DATASETS.TRAIN", cfg.DATASETS.TRAIN))
    mode, sample_size = image_check_settings()
    check_dataset_images(
        to_check,
        mode=mode,
        sample_size=sample_size,
        rank=comm.get_rank(),
        world_size=comm.get_world_size(),
        gather=comm.all_gather if comm.get_world_size() > 1 else None,
    )


def write_class_weights(model: nn.Module, output_dir: str) -> str:
    """Write this rank's re-weighting weights (of every DisAlign predictor) to
    ``output_dir/class_weights_rank{r}.json``, so runs can be checked for identical weights."""
    model = getattr(model, "module", model)
    weights = {
        name: m.class_weights.tolist()
        for name, m in model.named_modules()
        if isinstance(m, DisAlignFastRCNNOutputLayers) and m.class_weights is not None
    }
    path = os.path.join(output_dir, f"class_weights_rank{comm.get_rank()}.json")
    os.makedirs(output_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(weights, f)
    return path


def main(args: argparse.Namespace, config_hooks: Sequence[ConfigHook] = ()) -> Optional[dict]:
    """Train (``--resume`` to continue) and evaluate, or only evaluate (``--eval-only``), in
    this process; detectron2's ``launch`` runs it in every process.

    Returns:
        the evaluation results ({task: {metric: value}}) of the final model, or None without
        DATASETS.TEST.
    """
    register_datasets(args.register)
    cfg = setup(args, config_hooks)
    check_images(cfg, args.eval_only)

    if args.eval_only:
        model = Trainer.build_model(cfg)
        DisAlignCheckpointer(
            model, save_dir=cfg.OUTPUT_DIR, calibration_stage=cfg.MODEL.DISALIGN.FREEZE
        ).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    trainer = Trainer(cfg)
    if cfg.MODEL.DISALIGN.REWEIGHT and args.write_class_weights:
        write_class_weights(trainer.model, cfg.OUTPUT_DIR)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    # DefaultTrainer.train returns the final evaluation only with TEST.EXPECTED_RESULTS set;
    # return it always, so callers (tests, tools/demo) get the metrics of the trained model.
    return getattr(trainer, "_last_eval_results", None)
