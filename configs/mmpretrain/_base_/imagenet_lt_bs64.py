# ImageNet-LT (Liu et al. 2019; 1000 classes, 115.8K training images, 5 to 1280 per class) with
# the standard split files ImageNet_LT_{train,val,test}.txt ('path label' lines, paths relative
# to the ImageNet root: train/n01440764/..., val/n01440764/...), placed in data/imagenet/.
# 64 images per GPU (4 GPUs: the paper's batch of 256); the paper's augmentations (its authors'
# config): RandomResizedCrop 224, horizontal flip, colour jitter 0.4; test: resize 256, centre
# crop 224.
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
num_classes = 1000
# Training images per class for the GRW loss and the long-tail metric, counted from the
# training split file (no image is read).
class_frequencies = dict(
    type=dataset_type, data_root=data_root, ann_file='ImageNet_LT_train.txt', data_prefix='')

data_preprocessor = dict(
    num_classes=num_classes,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageNet_LT_train.txt',
        data_prefix='',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageNet_LT_val.txt',
        data_prefix='',
        pipeline=test_pipeline))
# The paper reports the test split (50 images per class).
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='ImageNet_LT_test.txt',
        data_prefix='',
        pipeline=test_pipeline))
val_evaluator = dict(
    type='LongTailAccuracy', topk=(1, 5), class_frequencies=class_frequencies)
test_evaluator = val_evaluator
