#!/usr/bin/env python
"""DisAlign training script, in the shape of detectron2's tools/train_net.py. The trainer, the
config setup and the checks live in ``disalign_det.engine``.

Stage 1 (joint learning) and stage 2 (distribution calibration) are the same script with
different configs; stage 2 sets MODEL.WEIGHTS to the stage-1 checkpoint and
MODEL.DISALIGN.FREEZE, CALIBRATION and REWEIGHT to True.

    python projects/DisAlign/train_net.py --config-file configs/detectron2/... [--num-gpus N]
    python projects/DisAlign/train_net.py --config-file ... --eval-only MODEL.WEIGHTS model.pth
    python projects/DisAlign/train_net.py --register NAME JSON IMAGE_ROOT --config-file ...
    python projects/DisAlign/train_net.py --demo --config-file configs/detectron2/demo/...

``--register`` (repeatable) registers a dataset in LVIS json format under any name (see
disalign_det.register_disalign_instances) in every process, before training.
``--write-class-weights`` writes each process's GRW class weights to
OUTPUT_DIR/class_weights_rank{r}.json (to check that all processes train with the same ones).
``--demo`` registers the demo's tiny CPU backbone and its MODEL.TINY_BACKBONE keys
(disalign_demo.det), needed by configs/detectron2/demo/ and quick_schedules/.

``--resume`` continues the run in OUTPUT_DIR with the recipe its checkpoint was trained with:
a config that changes a MODEL.DISALIGN key, MODEL.ROI_HEADS.NUM_CLASSES or DATASETS.TRAIN is
refused (naming each key, both values) unless ``--allow-recipe-change`` is given;
OUTPUT_DIR/config.yaml keeps the first start's config. When OUTPUT_DIR/last_checkpoint is empty
or names a missing or truncated file, --resume loads the newest complete model_*.pth and logs
it. Checkpoints and last_checkpoint are written atomically (a full disk leaves the previous
ones intact).

Our options beyond the paper (off by default; projects/DisAlign/README.md): a training-free
logit adjustment / tau-normalisation of a stage-1 model (``--eval-only`` with the stage-2 config,
MODEL.WEIGHTS <stage-1 model> and MODEL.DISALIGN.POSTHOC.TYPE logit_adjustment | tau_norm),
DisAlign's margin started at the class prior (MODEL.DISALIGN.MARGIN_INIT prior), and a held-out
calibration split (DATASETS.HELDOUT.FRACTION 0.2 with PART stage1 in stage 1, PART calibration
in stage 2).

Before training (or --eval-only) every image of DATASETS.TRAIN and DATASETS.TEST (only TEST
with --eval-only) must exist: a missing one is an error listing them, not a crash hours in.
"""
from detectron2.engine import launch

from disalign_det import engine


def argument_parser():
    parser = engine.argument_parser()
    parser.add_argument(
        "--demo",
        action="store_true",
        help="register disalign_demo.det's tiny CPU backbone and its MODEL.TINY_BACKBONE keys "
        "(for configs/detectron2/demo/ and quick_schedules/)",
    )
    return parser


def main(args):
    config_hooks = []
    if args.demo:
        # Imported only when asked: it registers the tiny backbones in BACKBONE_REGISTRY.
        try:
            from disalign_demo.det import add_tiny_backbone_config
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(
                f"--demo needs the package disalign_demo of this repository ({e}): install the "
                "repository (pip install -e .) or put its root on PYTHONPATH"
            ) from e
        config_hooks.append(add_tiny_backbone_config)
    return engine.main(args, config_hooks)


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
