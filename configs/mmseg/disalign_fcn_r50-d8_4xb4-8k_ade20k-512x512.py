# DisAlign stage 2 (distribution calibration) for FCN R50-D8 on ADE20K, 512x512 crops.
# Starts from the stage-1 checkpoint (load_from), freezes everything but the calibration
# (per-class magnitude alpha, margin beta, and the 1x1 confidence conv on the feature entering
# the classifier), and trains it for 8K iterations with the GRW loss (rho 0.3), poly LR from
# 0.01 as in stage 1. The auxiliary head's loss weight is 0, as in the authors' code.
_base_ = './fcn_r50-d8_4xb4-160k_ade20k-512x512.py'

model = dict(
    # Freezes all but the DisAlign parameters when built, so DDP only sees those.
    type='DisAlignEncoderDecoder',
    freeze_for_calibration=True,
    # No ImageNet initialisation: every weight comes from the stage-1 checkpoint.
    pretrained=None,
    decode_head=dict(
        type='DisAlignHead',
        head='FCNHead',  # the stage-1 head; its arguments are inherited unchanged
        calibration=dict(use_magnitude=True, use_margin=True, confidence='input'),
        loss_decode=dict(
            _delete_=True,
            type='GRWCrossEntropyLoss',
            class_frequencies={{_base_.ade20k_class_frequencies}},
            rho=0.3,
            loss_weight=1.0)),
    auxiliary_head=dict(loss_decode=dict(loss_weight=0.0)))

param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=8000, by_epoch=False)
]
train_cfg = dict(max_iters=8000, val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=2000))

# The stage-1 checkpoint (train the stage-1 config first, or pass --cfg-options load_from=...).
# To resume an interrupted stage 2 give --resume --cfg-options load_from=None: with load_from
# set, mmengine resumes from it (the stage-1 checkpoint) instead of this run's last one.
load_from = 'work_dirs/fcn_r50-d8_4xb4-160k_ade20k-512x512/iter_160000.pth'
