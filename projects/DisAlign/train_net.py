#!/usr/bin/env python
"""DisAlign training script, in the shape of detectron2's tools/train_net.py.

Stage 1 (joint learning) and stage 2 (distribution calibration) are the same script with
different configs; stage 2 sets MODEL.WEIGHTS to the stage-1 checkpoint and
MODEL.DISALIGN.FREEZE, CALIBRATION and REWEIGHT to True.

    python projects/DisAlign/train_net.py --config-file configs/detectron2/... [--num-gpus N]
    python projects/DisAlign/train_net.py --config-file ... --eval-only MODEL.WEIGHTS model.pth
    python projects/DisAlign/train_net.py --register NAME JSON IMAGE_ROOT --config-file ...

``--register`` (repeatable) registers a dataset in LVIS json format under any name (see
disalign_det.register_disalign_instances) in every process, before training.
``--write-class-weights`` writes each process's GRW class weights to
OUTPUT_DIR/class_weights_rank{r}.json (to check that all processes train with the same ones).

Before training (or --eval-only) every image of DATASETS.TRAIN and DATASETS.TEST (only TEST
with --eval-only) must exist: a missing one is an error listing them, not a crash hours in.
"""
import json
import logging
import os
import weakref

from detectron2.config import get_cfg
from detectron2.engine import defaults as d2_defaults
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, LVISEvaluator, verify_results
from detectron2.utils import comm

from disalign_det import (
    DisAlignCheckpointer,
    DisAlignFastRCNNOutputLayers,
    add_disalign_config,
    check_dataset_images,
    freeze_for_calibration,
    register_disalign_instances,
)

logger = logging.getLogger("detectron2")


class Trainer(DefaultTrainer):
    """DefaultTrainer with LVIS evaluation, the calibration stage's freezing, and a checkpointer
    that refuses a stage-1 checkpoint with another class count."""

    @classmethod
    def build_model(cls, cfg):
        model = super().build_model(cfg)
        if cfg.MODEL.DISALIGN.FREEZE:
            # Before the optimizer is built, so that it only holds the calibration parameters.
            freeze_for_calibration(model)
        return model

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
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
            self.checkpointer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        return super().build_hooks()


def register_datasets(specs) -> None:
    """Register each (name, json_file, image_root) unless that name is already registered."""
    for name, json_file, image_root in specs or []:
        if name not in DatasetCatalog.list():
            register_disalign_instances(name, json_file, image_root)


def write_class_weights(model, output_dir: str) -> str:
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


_d2_create_ddp_model = d2_defaults.create_ddp_model


def _create_ddp_model_cpu_aware(model, **kwargs):
    """detectron2's create_ddp_model passes device_ids=[local rank], which DistributedDataParallel
    rejects for a CPU model; on CPU (gloo, e.g. ``--num-gpus 2`` without GPUs) pass none."""
    if next(model.parameters()).device.type == "cpu":
        kwargs.setdefault("device_ids", None)
    return _d2_create_ddp_model(model, **kwargs)


# DefaultTrainer.__init__ looks this name up in detectron2.engine.defaults at call time.
d2_defaults.create_ddp_model = _create_ddp_model_cpu_aware


def setup(args):
    """Create the config, in detectron2's order, and do basic setups."""
    cfg = get_cfg()
    add_disalign_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.eval_only:
        # The GRW class weights only enter the loss; without this, evaluating a stage-2
        # model would need (and count) the training annotations.
        cfg.MODEL.DISALIGN.REWEIGHT = False
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    register_datasets(getattr(args, "register", None))
    cfg = setup(args)
    # One os.path.exists per image now, rather than a crash when the loader reaches it.
    to_check = [("DATASETS.TEST", cfg.DATASETS.TEST)]
    if not args.eval_only:
        to_check.insert(0, ("DATASETS.TRAIN", cfg.DATASETS.TRAIN))
    check_dataset_images(to_check)

    if args.eval_only:
        model = Trainer.build_model(cfg)
        DisAlignCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    trainer = Trainer(cfg)
    if cfg.MODEL.DISALIGN.REWEIGHT and getattr(args, "write_class_weights", False):
        write_class_weights(trainer.model, cfg.OUTPUT_DIR)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    # DefaultTrainer.train returns the final evaluation only with TEST.EXPECTED_RESULTS set;
    # return it always, so callers (tests, tools/demo) get the metrics of the trained model.
    return getattr(trainer, "_last_eval_results", None)


def argument_parser():
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


def invoke_main() -> None:
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()  # pragma: no cover
