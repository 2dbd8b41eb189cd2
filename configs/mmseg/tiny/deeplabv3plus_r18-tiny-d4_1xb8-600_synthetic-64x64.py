# Stage 1 on CPU: DeepLabV3+ (DepthwiseSeparableASPPHead) on the narrow ResNet-18-D4 of the
# FCN tiny config; ASPP dilations shrunk to the 16x16 feature map of 64x64 images.
_base_ = './fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py'
model = dict(
    decode_head=dict(
        _delete_=True,
        type='DepthwiseSeparableASPPHead',
        in_channels=128,
        in_index=3,
        channels=32,
        dilations=(1, 2, 3, 4),
        c1_in_channels=16,
        c1_channels=8,
        dropout_ratio=0.1,
        num_classes={{_base_.num_classes}},
        norm_cfg={{_base_.norm_cfg}},
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
