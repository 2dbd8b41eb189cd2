# DisAlign stage 2 on Places-LT (linear classifier): rho = 1.2, 10 epochs, LR 0.1 cosine
# restarted, batch 256. Everything but the calibration is frozen (the stage-1 model's ImageNet
# initialisation is not needed again: stage1_checkpoint holds all its weights). Give the
# stage-1 checkpoint with --cfg-options model.stage1_checkpoint=PATH.
_base_ = './resnet152_4xb64-30e_places-lt.py'
model = dict(
    type='DisAlignImageClassifier',
    freeze_for_calibration=True,
    stage1_checkpoint='work_dirs/resnet152_4xb64-30e_places-lt/epoch_30.pth',
    backbone=dict(init_cfg=None),
    head=dict(
        type='DisAlignClsHead',
        head='LinearClsHead',
        calibration=dict(use_magnitude=True, use_margin=True, confidence='input'),
        loss=dict(
            _delete_=True,
            type='GRWCrossEntropyLoss',
            class_frequencies={{_base_.class_frequencies}},
            rho=1.2,
            loss_weight=1.0)))
max_epochs = 10
param_scheduler = dict(end=max_epochs)
train_cfg = dict(max_epochs=max_epochs, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2))
# The LR 0.1 is for 256 images per iteration (4 GPUs x 64, the paper's batch): another total
# batch (processes x train_dataloader.batch_size) scales it linearly (mmengine's auto_scale_lr,
# Runner.scale_lr), and the log says so at start (disalign_mmengine.DisAlignBatchSizeHook);
# --cfg-options auto_scale_lr.enable=False keeps 0.1.
auto_scale_lr = dict(enable=True, base_batch_size=256)
custom_hooks = [
    dict(type='DisAlignDataCheckHook'),
    dict(type='DisAlignRecipeGuardHook'),
    dict(type='DisAlignBatchSizeHook'),
]
