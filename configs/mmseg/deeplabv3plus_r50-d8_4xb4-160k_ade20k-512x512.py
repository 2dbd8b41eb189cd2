# DisAlign stage 1 (joint learning) for DeepLabV3+ R50-D8 on ADE20K: mmseg's own 160k recipe, unchanged,
# evaluated with the long-tail metric (mIoU/mAcc overall and for head, body and tail classes).
_base_ = 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-160k_ade20k-512x512.py'
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

# Before any iteration: every listed image/label map exists, and the GRW loss's frequency file
# names the dataset's classes (disalign_seg.DisAlignDataCheckHook); --resume continues only the
# recipe the checkpoint was trained with, and the work dir keeps the first config
# (disalign_mmengine.DisAlignRecipeGuardHook).
custom_hooks = [dict(type='DisAlignDataCheckHook'), dict(type='DisAlignRecipeGuardHook')]
# Checkpoints and last_checkpoint written atomically; --resume falls back to the newest complete
# checkpoint (disalign_mmengine.DisAlignCheckpointHook, a CheckpointHook subclass).
default_hooks = dict(checkpoint=dict(type='DisAlignCheckpointHook'))
