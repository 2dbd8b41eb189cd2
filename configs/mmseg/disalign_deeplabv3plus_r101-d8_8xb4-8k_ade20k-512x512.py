# DisAlign stage 2 for DeepLabV3+ R101-D8 on ADE20K: as the R50 config, with a ResNet-101.
_base_ = './disalign_deeplabv3plus_r50-d8_8xb4-8k_ade20k-512x512.py'
model = dict(
    backbone=dict(depth=101),
    # mmseg's public checkpoint of deeplabv3plus_r101-d8_4xb4-160k_ade20k-512x512 (its
    # metafile: ADE20K val mIoU 45.47 single-scale, 46.35 multi-scale + flip), what the
    # authors' stage 2 starts from. Your own stage 1:
    # --cfg-options model.stage1_checkpoint=work_dirs/deeplabv3plus_r101-d8_4xb4-160k_ade20k-512x512/iter_160000.pth
    # (mmseg 1.2.2's metafile lists this name twice; the other entry, mIoU 44.6, links the
    # 80k checkpoint deeplabv3plus_r101-d8_512x512_80k_ade20k.)
    stage1_checkpoint='https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3plus/deeplabv3plus_r101-d8_512x512_160k_ade20k/deeplabv3plus_r101-d8_512x512_160k_ade20k_20200615_123232-38ed86bb.pth')  # noqa
