# DisAlign stage 2 for FCN R101-D8 on ADE20K: as the R50 config, with a ResNet-101.
_base_ = './disalign_fcn_r50-d8_8xb4-8k_ade20k-512x512.py'
model = dict(
    backbone=dict(depth=101),
    stage1_checkpoint='work_dirs/fcn_r101-d8_4xb4-160k_ade20k-512x512/iter_160000.pth')
