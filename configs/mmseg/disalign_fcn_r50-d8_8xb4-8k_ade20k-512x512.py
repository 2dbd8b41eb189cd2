# DisAlign stage 2 (distribution calibration) for FCN R50-D8 on ADE20K, 512x512 crops.
# Starts from the stage-1 checkpoint (model.stage1_checkpoint; by default mmseg's public 160k
# checkpoint), freezes everything but the calibration (per-class magnitude alpha, margin beta,
# and the 1x1 confidence conv on the feature entering the classifier), and trains it for 8K
# iterations with the GRW loss (rho 0.3), poly LR from 0.01 as in stage 1. The auxiliary
# head's loss weight is 0, as in the authors' code.
# Batch: the paper's 32 images, 8 GPUs x 4 (mmseg's ADE20K dataloader gives 4 per GPU). On
# fewer processes the LR is scaled linearly from 0.01 at 32 images (auto_scale_lr, below: e.g.
# 0.005 on 4 GPUs x 4, 0.00125 for a plain single-process tools/train.py), and the log says so
# at start (DisAlignBatchSizeHook); --cfg-options auto_scale_lr.enable=False keeps 0.01.
# Schedule: the paper's 8K iterations (the authors' released config trains 4000).
_base_ = './fcn_r50-d8_4xb4-160k_ade20k-512x512.py'

model = dict(
    # Freezes all but the DisAlign parameters when built, so DDP only sees those.
    type='DisAlignEncoderDecoder',
    freeze_for_calibration=True,
    # The stage-1 checkpoint, loaded when training starts (init_weights), not through
    # load_from: so mmseg's plain --resume continues this run from its own last checkpoint.
    # Default: mmseg's public checkpoint of the stage-1 config
    # fcn_r50-d8_4xb4-160k_ade20k-512x512 (its metafile: ADE20K val mIoU 36.10
    # single-scale, 38.08 multi-scale + flip), the model the authors' stage 2 starts from.
    # Downloaded once into $TORCH_HOME/hub/checkpoints/ (keyed by file name). Your own stage 1:
    # --cfg-options model.stage1_checkpoint=work_dirs/fcn_r50-d8_4xb4-160k_ade20k-512x512/iter_160000.pth
    # Any other model's checkpoint is refused before the first iteration.
    stage1_checkpoint='https://download.openmmlab.com/mmsegmentation/v0.5/fcn/fcn_r50-d8_512x512_160k_ade20k/fcn_r50-d8_512x512_160k_ade20k_20200615_100713-4edbc3b4.pth',  # noqa
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
            # Paper eq. 9 and the authors' code (mmseg 0.x's cross_entropy): the mean over all
            # pixels of the batch, not torch's weighted mean (the loss's default).
            avg_mode='all',
            loss_weight=1.0)),
    auxiliary_head=dict(loss_decode=dict(loss_weight=0.0)))

param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=8000, by_epoch=False)
]
train_cfg = dict(max_iters=8000, val_interval=8000)
# The LR 0.01 is for 32 images per iteration (8 GPUs x 4): the paper's stage-2 batch. Another
# total batch (processes x train_dataloader.batch_size) scales it linearly (mmengine's
# Runner.scale_lr; PolyLR's eta_min 1e-4 stays as it is), for the paper's effective recipe on
# fewer GPUs; the schedule keeps its 8K iterations.
auto_scale_lr = dict(enable=True, base_batch_size=32)
# Logs the total batch and the LR the run starts from, or warns when the LR is not scaled for
# another batch (disalign_mmengine.DisAlignBatchSizeHook).
custom_hooks = [
    dict(type='DisAlignDataCheckHook'),
    dict(type='DisAlignRecipeGuardHook'),
    dict(type='DisAlignBatchSizeHook'),
]
default_hooks = dict(checkpoint=dict(interval=2000))
