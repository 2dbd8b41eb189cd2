# DisAlign stage 1 (joint learning) for FCN R101-D8 on ADE20K: the R50 config (mmseg's own
# 160k recipe, the long-tail metric, the 0.x multi-scale + flip test, the DisAlign hooks) with a
# ResNet-101, as mmseg derives its own R101 config from its R50 one.
_base_ = './fcn_r50-d8_4xb4-160k_ade20k-512x512.py'
model = dict(pretrained='open-mmlab://resnet101_v1c', backbone=dict(depth=101))
