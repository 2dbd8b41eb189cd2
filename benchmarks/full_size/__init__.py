"""Every shipped LVIS, ADE20K and long-tail classification config family, run at full size on CPU.

For each family (LVIS v0.5 and v1 x Mask / Cascade Mask R-CNN x linear / cosine head, ADE20K x
FCN / DeepLabV3+, with the backbone asked for, R-50 by default; ImageNet-LT ResNeXt-50 x linear /
cosine head, iNaturalist 2018 ResNet-50, Places-LT ResNet-152, each with its own backbone):

1. generated data of the config's size and the dataset's real class list (1230 / 1203 LVIS
   classes from detectron2's own LVIS metadata, the 150 ADE20K classes of mmseg's
   ``ADE20KDataset``; 1000 / 8142 / 365 classes in the long-tail split-file format, see
   ``generate_cls``), laid out where the configs look for it;
2. stage 1 with the shipped stage-1 config for a few iterations, through the user's entry
   point (``projects/DisAlign/train_net.py``; the stock ``tools/train.py`` of mmseg and
   MMPretrain), which writes a checkpoint and evaluates it with the config's evaluator
   (``LVISEvaluator``; ``LongTailIoUMetric``; ``LongTailAccuracy``);
3. stage 2 with the shipped stage-2 config from that checkpoint, then its evaluation;
4. (unless ``--no-timing``) cost at full size, each measurement in a fresh process, on one
   batch of the config's train loader and the stage-1 checkpoint: a stage-1 training
   iteration, a stage-2 (calibration) training iteration, and the floor of stage 2: the
   stage-2 model's training forward (losses included) under ``torch.no_grad()``. Median time
   and peak memory (rise of the process's peak RSS; see ``common.py``).

Only these settings differ from the shipped configs, and the script prints them:
- data paths: every run's working directory is ``--out``; detectron2 reads
  ``$DETECTRON2_DATASETS=<out>/datasets`` (its builtin ``lvis_v0.5_*`` / ``lvis_v1_*`` names),
  mmseg and MMPretrain the configs' own ``data/...`` folders under it; stage 2 reads the stage-1
  checkpoint that the stage-1 run wrote (detectron2: the config's own ``MODEL.WEIGHTS`` path;
  mmseg, MMPretrain: the stage-1 checkpoint option);
- iteration counts (``--iters``; the checkpoint and the evaluation come at the last one; the
  configs' LR warm-up is kept, so these few iterations train at a small LR). The epoch-based
  classification configs run one epoch of the first ``--iters`` x batch images of their
  training list (mmengine's ``dataset.indices``) and validate on the first
  ``--cls-val-images`` of their val list; the class counts of the GRW loss and the metric are
  those of the whole training list;
- the ImageNet initialisation (no hub access here): stage 1 starts from random weights
  (detectron2: with FrozenBN statistics set from one generated batch, ``det_init_weights``;
  Places-LT's ResNet-152: PyTorch's default initialisation instead of MMPretrain's ImageNet
  checkpoint);
- detectron2's ``MODEL.DEVICE`` (the configs leave detectron2's default, cuda): cpu here;
- detectron2's ``SOLVER.IMS_PER_BATCH`` 16 is the batch of all 8 GPUs the LVIS schedules are
  written for: one process runs one GPU's share (``--det-images-per-process``, default 2),
  with ``SOLVER.REFERENCE_WORLD_SIZE`` 0 (the stage-2 configs' 8 would have detectron2 scale
  the batch, LR and schedule to the number of processes).
  mmseg's and MMPretrain's ``batch_size`` is already per GPU and is kept (unless
  ``--cls-images-per-process`` is given).

Usage::

    python benchmarks/full_size_configs.py --out output/full_size [--family NAME ...]
        [--backbone R_50 R_101 X_101_32x8d] [--iters 2] [--time-iters 2] [--no-timing]

(``--backbone`` chooses among the detection and segmentation configs; each classification
family has one backbone, its config's.)

It writes ``<out>/full_size_results.json`` and a markdown table ``full_size_results.md``.
"""

# The modules, in the order a run uses them:
#   families.py   the catalogue: families, their configs and backbones, the frameworks' facts
#   data.py       generated LVIS / ADE20K / long-tail classification data of full size
#   overrides.py  the settings that differ from the shipped configs (and the printed summary)
#   runs.py       stage 1 -> checkpoint -> stage 2 -> evaluator, through each framework's tool
#   cost.py       the per-measurement workers (fresh processes) and measure_family
#   report.py     the markdown table
#   cli.py        the command line, the worker dispatch and the loop over families
#
# benchmarks/ is a folder of scripts, not an installed package: the entry point
# benchmarks/full_size_configs.py (and gpu_check.py) put benchmarks/ on sys.path, which makes
# this package and its sibling module ``common`` importable as top-level names.
