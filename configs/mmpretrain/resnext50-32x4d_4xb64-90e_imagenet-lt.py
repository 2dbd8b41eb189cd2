# Stage 1 (joint learning) on ImageNet-LT: ResNeXt-50 (32x4d) from scratch with MMPretrain's
# LinearClsHead and plain cross-entropy, 90 epochs (paper supplement, Table 1 "Baseline").
_base_ = [
    'mmpretrain::_base_/default_runtime.py',
    './_base_/imagenet_lt_bs64.py',
    './_base_/schedule_sgd_cosine_lt.py',
]
custom_imports = dict(imports=['disalign_cls'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNeXt', depth=50, num_stages=4, out_indices=(3, ), groups=32,
        width_per_group=4, style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes={{_base_.num_classes}},
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
# DisAlignCheckpointHook (disalign_mmengine): mmengine's CheckpointHook with atomic writes and a
# --resume that falls back to the newest complete checkpoint.
default_hooks = dict(checkpoint=dict(type='DisAlignCheckpointHook', interval=10, max_keep_ckpts=2))
# --resume continues only the recipe the checkpoint was trained with, and the work dir keeps the
# first config (disalign_mmengine.DisAlignRecipeGuardHook).
# Before any iteration: every label in [0, num_classes), every image on disk, the headers of a
# sample of the images (disalign_cls.DisAlignDataCheckHook).
custom_hooks = [dict(type='DisAlignDataCheckHook'), dict(type='DisAlignRecipeGuardHook')]
