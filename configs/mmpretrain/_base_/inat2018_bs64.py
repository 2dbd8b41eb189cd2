# iNaturalist 2018 (Van Horn et al. 2018; 8142 species, 437.5K training images, 2 to 1000 per
# class) with the long-tail literature's split files iNaturalist18_{train,val}.txt ('path label'
# lines, paths relative to the dataset root: train_val2018/...), placed in data/inat2018/.
# 64 images per GPU (4 GPUs: the paper's batch of 256); the paper's augmentations (its authors'
# config): RandomResizedCrop 224, horizontal flip, colour jitter 0.4; test: resize 256, centre
# crop 224.
dataset_type = 'CustomDataset'
data_root = 'data/inat2018'
num_classes = 8142
# Training images per class for the GRW loss and the long-tail metric, counted from the
# training split file (no image is read).
class_frequencies = dict(
    type=dataset_type, data_root=data_root, ann_file='iNaturalist18_train.txt', data_prefix='')

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
        ann_file='iNaturalist18_train.txt',
        data_prefix='',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='iNaturalist18_val.txt',
        data_prefix='',
        pipeline=test_pipeline))
# iNaturalist 2018 has no labelled test split: the paper reports the val split (3 per class).
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='iNaturalist18_val.txt',
        data_prefix='',
        pipeline=test_pipeline))
val_evaluator = dict(
    type='LongTailAccuracy', topk=(1, 5), class_frequencies=class_frequencies)
test_evaluator = val_evaluator
