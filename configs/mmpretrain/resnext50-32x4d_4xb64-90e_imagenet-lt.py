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
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2))
