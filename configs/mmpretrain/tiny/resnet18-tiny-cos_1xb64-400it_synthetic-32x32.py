# The cosine-classifier variant of the tiny stage 1 (the paper's "Baseline*"): CosineClsHead,
# s * cos(w, x) with a learned scale s (initialised to 20).
_base_ = './resnet18-tiny_1xb64-400it_synthetic-32x32.py'
model = dict(head=dict(_delete_=True, type='CosineClsHead', num_classes={{_base_.num_classes}},
                       in_channels=128, scale=20.0, topk=(1, )))
