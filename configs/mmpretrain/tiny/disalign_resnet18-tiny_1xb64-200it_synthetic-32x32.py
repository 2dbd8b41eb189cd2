# DisAlign stage 2 on CPU for the tiny stage-1 model: everything frozen but the calibration
# (magnitude, margin, input-dependent confidence), GRW loss with the paper's rho = 1.2 for a
# linear classifier, the stage-1 LR and cosine schedule restarted (as the paper). Give the
# stage-1 checkpoint with --cfg-options model.stage1_checkpoint=WORK_DIR/iter_400.pth.
_base_ = './resnet18-tiny_1xb64-400it_synthetic-32x32.py'
model = dict(
    type='DisAlignImageClassifier',
    freeze_for_calibration=True,
    stage1_checkpoint='work_dirs/resnet18-tiny_1xb64-400it_synthetic-32x32/iter_400.pth',
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

max_iters = 200
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters)
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
