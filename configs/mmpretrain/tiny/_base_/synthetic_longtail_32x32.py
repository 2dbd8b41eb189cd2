# The built-in long-tailed dataset (disalign_demo.cls.generate_cls_synthetic, run by tools/demo/cls_demo.py): 16 classes,
# 32x32 images, training images per class from 320 down to 5 (5 many-, 6 medium-, 5 few-shot
# classes), 40 test images per class. Annotation lists in MMPretrain's CustomDataset format
# ('path label' lines, as ImageNet_LT_train.txt). Its folder comes from the environment
# variable DISALIGN_CLS_DATA; the demo and the tests generate it there.
dataset_type = 'CustomDataset'
data_root = '{{$DISALIGN_CLS_DATA:data/disalign_cls_synthetic}}'
num_classes = 16
# Training images per class, for the GRW loss and the long-tail metric: counted from the
# training annotation list (the dataset is built without its pipeline, no image is read).
class_frequencies = dict(
    type=dataset_type, data_root=data_root, ann_file='meta/train.txt', with_label=True)

data_preprocessor = dict(
    num_classes=num_classes,
    mean=[127.5, 127.5, 127.5],
    std=[64.0, 64.0, 64.0],
    to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/train.txt',
        with_label=True,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/test.txt',
        with_label=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='LongTailAccuracy', topk=(1, ), class_frequencies=class_frequencies)
test_evaluator = val_evaluator
