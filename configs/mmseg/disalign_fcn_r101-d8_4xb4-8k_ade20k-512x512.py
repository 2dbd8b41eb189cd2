# DisAlign stage 2 for FCN R101-D8 on ADE20K: as the R50 config, with a ResNet-101.
_base_ = './disalign_fcn_r50-d8_4xb4-8k_ade20k-512x512.py'
model = dict(backbone=dict(depth=101))
# To resume an interrupted stage 2 give --resume --cfg-options load_from=None: with load_from
# set, mmengine resumes from it (the stage-1 checkpoint) instead of this run's last one.
load_from = 'work_dirs/fcn_r101-d8_4xb4-160k_ade20k-512x512/iter_160000.pth'
