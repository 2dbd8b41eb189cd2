# Stage 1 on CPU for tests and the demo: a narrow ResNet-18 (16 base channels, BN, trained from
# scratch; ImageNet stem, so the 32x32 input is 8x8 after it) with MMPretrain's LinearClsHead and plain cross-entropy, on the built-in
# long-tailed 32x32 dataset; instance-balanced sampling, as the paper's joint learning stage.
_base_ = ['mmpretrain::_base_/default_runtime.py', './_base_/synthetic_longtail_32x32.py']
custom_imports = dict(imports=['disalign_cls'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet',
        depth=18,
        stem_channels=16,
        base_channels=16,
        num_stages=4,
        out_indices=(3, ),
        norm_cfg=dict(type='BN', requires_grad=True),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes={{_base_.num_classes}},
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False))
max_iters = 400
# The paper's schedule shape: cosine from the base LR to 0.
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters)
train_cfg = dict(by_epoch=False, max_iters=max_iters, val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    # mmengine's CheckpointHook with atomic writes and a --resume that falls back to the newest
    # complete checkpoint (disalign_mmengine.DisAlignCheckpointHook)
    checkpoint=dict(type='DisAlignCheckpointHook', by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
# --resume continues only the recipe the checkpoint was trained with, and the work dir keeps the
# first config (disalign_mmengine.DisAlignRecipeGuardHook).
# Before any iteration: every label in [0, num_classes), every image on disk, the headers of a
# sample of the images (disalign_cls.DisAlignDataCheckHook).
custom_hooks = [dict(type='DisAlignDataCheckHook'), dict(type='DisAlignRecipeGuardHook')]
