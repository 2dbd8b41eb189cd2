# DisAlign stage 2 on iNaturalist 2018 (linear classifier): rho = 1.2, 30 epochs (the paper's
# iNaturalist setting), LR 0.1 cosine restarted, batch 256. Give the stage-1 checkpoint with
# --cfg-options model.stage1_checkpoint=PATH.
_base_ = './resnet50_4xb64-90e_inat2018.py'
model = dict(
    type='DisAlignImageClassifier',
    freeze_for_calibration=True,
    stage1_checkpoint='work_dirs/resnet50_4xb64-90e_inat2018/epoch_90.pth',
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
max_epochs = 30
param_scheduler = dict(end=max_epochs)
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
default_hooks = dict(checkpoint=dict(interval=5))
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
