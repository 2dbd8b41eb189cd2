# DisAlign stage 2 for FCN R101-D8 on ADE20K: as the R50 config, with a ResNet-101.
_base_ = './disalign_fcn_r50-d8_8xb4-8k_ade20k-512x512.py'
model = dict(
    backbone=dict(depth=101),
    # mmseg's public checkpoint of fcn_r101-d8_4xb4-160k_ade20k-512x512 (its
    # metafile: ADE20K val mIoU 39.91 single-scale, 41.40 multi-scale + flip), what the
    # authors' stage 2 starts from. Your own stage 1:
    # --cfg-options model.stage1_checkpoint=work_dirs/fcn_r101-d8_4xb4-160k_ade20k-512x512/iter_160000.pth
    stage1_checkpoint='https://download.openmmlab.com/mmsegmentation/v0.5/fcn/fcn_r101-d8_512x512_160k_ade20k/fcn_r101-d8_512x512_160k_ade20k_20200615_105816-fd192bd5.pth')  # noqa
