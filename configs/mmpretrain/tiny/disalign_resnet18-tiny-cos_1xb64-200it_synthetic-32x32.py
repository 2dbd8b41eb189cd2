# DisAlign stage 2 for the cosine-classifier tiny model ("DisAlign*"): rho = 1.5, the paper's
# value for a cosine head. Give the stage-1 checkpoint with
# --cfg-options model.stage1_checkpoint=WORK_DIR/iter_400.pth.
_base_ = './disalign_resnet18-tiny_1xb64-200it_synthetic-32x32.py'
model = dict(
    stage1_checkpoint='work_dirs/resnet18-tiny-cos_1xb64-400it_synthetic-32x32/iter_400.pth',
    head=dict(head='CosineClsHead', scale=20.0, loss=dict(rho=1.5)))
