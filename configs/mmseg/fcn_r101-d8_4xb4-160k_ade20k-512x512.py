# DisAlign stage 1 (joint learning) for FCN R101-D8 on ADE20K: mmseg's own 160k recipe, unchanged,
# evaluated with the long-tail metric (mIoU/mAcc overall and for head, body and tail classes).
_base_ = 'mmseg::fcn/fcn_r101-d8_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['disalign_seg'], allow_failed_imports=False)

# Per-class pixel shares of the training set: ADE20K ships them as objectInfo150.txt (Ratio
# column); tools/compute_pixel_frequencies.py --reduce-zero-label computes them from the labels.
ade20k_class_frequencies = 'data/ade/ADEChallengeData2016/objectInfo150.txt'

# head: >1% of the pixels, body: 0.1%-1%, tail: <0.1% (the paper's ADE20K groups).
val_evaluator = dict(
    type='LongTailIoUMetric',
    class_frequencies=ade20k_class_frequencies,
    thresholds=(0.01, 0.001))
test_evaluator = val_evaluator

# Multi-scale + flip test (tools/test.py --tta) as mmseg 0.x's --aug-test, which gave the main
# paper's Table 6 and mmseg's published "ms+flip" numbers: MultiScaleFlipAug with
# img_scale=(2048, 512) and the ratios below resizes to (2048 r, 512 r) keeping the aspect ratio
# (mmcv's rescale: factor = min(2048 r / long side, 512 r / short side)), each also flipped;
# the softmax outputs are averaged at the original size (mmseg's SegTTAModel). mmseg 1.x's own
# ADE20K tta_pipeline instead scales the raw image by each ratio (Resize scale_factor=r): the
# same only for images whose short side is 512 and long side at most 2048.
aug_test_scale = (2048, 512)
aug_test_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='Resize',
                    scale=(int(aug_test_scale[0] * r), int(aug_test_scale[1] * r)),
                    keep_ratio=True) for r in aug_test_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ])
]

# Before any iteration: every listed image/label map exists, and the GRW loss's frequency file
# names the dataset's classes (disalign_seg.DisAlignDataCheckHook); --resume continues only the
# recipe the checkpoint was trained with, and the work dir keeps the first config
# (disalign_mmengine.DisAlignRecipeGuardHook).
custom_hooks = [dict(type='DisAlignDataCheckHook'), dict(type='DisAlignRecipeGuardHook')]
# Checkpoints and last_checkpoint written atomically; --resume falls back to the newest complete
# checkpoint (disalign_mmengine.DisAlignCheckpointHook, a CheckpointHook subclass).
default_hooks = dict(checkpoint=dict(type='DisAlignCheckpointHook'))
