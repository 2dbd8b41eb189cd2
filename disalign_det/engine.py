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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import weakref
from typing import Callable, Iterator, Optional, Sequence

from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup
from detectron2.engine import defaults as d2_defaults
from detectron2.evaluation import COCOEvaluator, LVISEvaluator, verify_results
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.utils import comm
from torch import nn

from .calibration_stage import DisAlignCheckpointer, freeze_for_calibration
from .config import add_disalign_config
from .data import check_dataset_images, register_disalign_instances
from .modeling import DisAlignFastRCNNOutputLayers

__all__ = [
    "ConfigHook",
    "Trainer",
    "argument_parser",
    "check_images",
    "cpu_aware_ddp",
    "main",
    "register_datasets",
    "setup",
    "write_class_weights",
]

ConfigHook = Callable[[CfgNode], None]


@contextlib.contextmanager
def cpu_aware_ddp() -> Iterator[None]:
    """Within this block, detectron2's ``create_ddp_model`` passes no ``device_ids`` for a CPU
    model (it passes ``[local rank]``, which DistributedDataParallel rejects for one), so
    ``--num-gpus N`` also runs on CPU (gloo). GPU models are wrapped as detectron2 does.

    ``DefaultTrainer.__init__`` looks ``create_ddp_model`` up in ``detectron2.engine.defaults``
    when it runs, so the name is replaced there for the block only and restored after it.
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
            trainer=weakref.proxy(self),
        )
        return super().build_hooks()


def argument_parser() -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser`` with ``--register`` and
    ``--write-class-weights``."""
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
    return parser


def register_datasets(specs: Optional[Sequence[Sequence[str]]]) -> None:
    """Register each (name, json_file, image_root) (``--register``) unless that name is
    already registered; see ``register_disalign_instances``."""
    for name, json_file, image_root in specs or []:
        if name not in DatasetCatalog.list():
            register_disalign_instances(name, json_file, image_root)


# What a config that needs the demo's tiny backbone lacks without train_net.py --demo.
_DEMO_HINT = (
    "The configs of configs/detectron2/demo/ and quick_schedules/ use the demo's tiny CPU "
    "backbone and its MODEL.TINY_BACKBONE keys: run them with train_net.py --demo (or pass "
    "disalign_demo.det.add_tiny_backbone_config in config_hooks)."
)


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
            f"(add_disalign_config); other keys need their add_*_config first. {_DEMO_HINT}"
        ) from None


def _check_backbone_registered(cfg: CfgNode, config_file: str) -> None:
    """Raise now, naming the key and the file, if MODEL.BACKBONE.NAME is not registered
    (detectron2 would raise only when building the model, without saying where it came from)."""
    name = cfg.MODEL.BACKBONE.NAME
    if name not in BACKBONE_REGISTRY:
        raise ValueError(
            f"MODEL.BACKBONE.NAME {name!r} (--config-file {config_file} and the command-line "
            "options) is not in detectron2's BACKBONE_REGISTRY: import the module that "
            f"registers it before training. {_DEMO_HINT}"
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
    if args.eval_only:
        # The GRW class weights only enter the loss; without this, evaluating a stage-2
        # model would need (and count) the training annotations.
        cfg.MODEL.DISALIGN.REWEIGHT = False
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def check_images(cfg: CfgNode, eval_only: bool) -> None:
    """Raise if an image of DATASETS.TRAIN (unless ``eval_only``) or DATASETS.TEST is not on
    disk: one ``os.path.exists`` per image now, rather than a crash when the loader reaches it."""
    to_check = [("DATASETS.TEST", cfg.DATASETS.TEST)]
    if not eval_only:
        to_check.insert(0, ("DATASETS.TRAIN", cfg.DATASETS.TRAIN))
    check_dataset_images(to_check)


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
