# DisAlign stage 2 on ImageNet-LT with the cosine classifier (the paper's "DisAlign*", top-1 53.4
# in its Table 1): rho = 1.5, the paper's value for a cosine head; otherwise as the linear one.
_base_ = './disalign_resnext50-32x4d_4xb64-10e_imagenet-lt.py'
model = dict(
    stage1_checkpoint='work_dirs/resnext50-32x4d-cos_4xb64-90e_imagenet-lt/epoch_90.pth',
    head=dict(head='CosineClsHead', scale=20.0, loss=dict(rho=1.5)))
