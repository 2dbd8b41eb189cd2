# Stage 1 on ImageNet-LT with the cosine classifier (the paper's "Baseline*", top-1 49.2 in its
# Table 1): CosineClsHead, s * cos(w, x) with a learned scale s (initialised to 20).
_base_ = './resnext50-32x4d_4xb64-90e_imagenet-lt.py'
model = dict(head=dict(_delete_=True, type='CosineClsHead', num_classes={{_base_.num_classes}},
                       in_channels=2048, scale=20.0, topk=(1, 5)))
