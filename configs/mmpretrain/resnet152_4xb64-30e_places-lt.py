# Stage 1 (joint learning) on Places-LT: ResNet-152 pre-trained on the full ImageNet-2012, all
# layers frozen except the last ResNet block (frozen_stages=3: stem and stages 1-3), 30 epochs
# (paper supplement, "Configuration Detail"; Table 5). The ImageNet weights are MMPretrain's
# own ResNet-152 (ImageNet-1k, 8xb32) checkpoint.
_base_ = [
    'mmpretrain::_base_/default_runtime.py',
    './_base_/places_lt_bs64.py',
    './_base_/schedule_sgd_cosine_lt.py',
]
custom_imports = dict(imports=['disalign_cls'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet',
        depth=152,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=3,
        style='pytorch',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmclassification/v0/resnet/'
            'resnet152_8xb32_in1k_20210901-4d7582fa.pth',
            prefix='backbone')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes={{_base_.num_classes}},
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
max_epochs = 30
param_scheduler = dict(end=max_epochs)
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
# DisAlignCheckpointHook (disalign_mmengine): mmengine's CheckpointHook with atomic writes and a
# --resume that falls back to the newest complete checkpoint.
default_hooks = dict(checkpoint=dict(type='DisAlignCheckpointHook', interval=5, max_keep_ckpts=2))
# --resume continues only the recipe the checkpoint was trained with, and the work dir keeps the
# first config (disalign_mmengine.DisAlignRecipeGuardHook).
# Before any iteration: every label in [0, num_classes), every image on disk, the headers of a
# sample of the images (disalign_cls.DisAlignDataCheckHook).
custom_hooks = [dict(type='DisAlignDataCheckHook'), dict(type='DisAlignRecipeGuardHook')]
