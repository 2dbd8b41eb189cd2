# DisAlign stage 2 on ImageNet-LT (linear classifier): backbone and classifier frozen (BatchNorm
# statistics included), magnitude, margin and input-dependent confidence learned with the GRW
# loss, rho = 1.2; the stage-1 schedule restarted for 10 epochs (LR 0.1, cosine, batch 256,
# weight decay 5e-4: the authors' resx50...disalign.10e config). Give the stage-1 checkpoint
# with --cfg-options model.stage1_checkpoint=PATH.
_base_ = './resnext50-32x4d_4xb64-90e_imagenet-lt.py'
model = dict(
    type='DisAlignImageClassifier',
    freeze_for_calibration=True,
    stage1_checkpoint='work_dirs/resnext50-32x4d_4xb64-90e_imagenet-lt/epoch_90.pth',
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
