# The built-in long-tailed dataset (disalign_demo.seg, ADE20K layout and label
# convention: 0 = unlabelled, class c stored as c+1, read with reduce_zero_label=True).
# Its folder comes from the environment variable DISALIGN_SEG_DATA; the demo and the tests
# generate it there, and write its class pixel counts to pixel_frequencies.json.
dataset_type = 'BaseSegDataset'
data_root = '{{$DISALIGN_SEG_DATA:data/disalign_synthetic}}'
class_frequencies = data_root + '/pixel_frequencies.json'
metainfo = dict(
    classes=('head0', 'head1', 'head2', 'head3', 'body0', 'body1', 'body2', 'body3', 'tail0',
             'tail1', 'tail2', 'tail3', 'tail4', 'tail5'))
crop_size = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
# Multi-scale + flip test (tools/test.py --tta; mmseg's SegTTAModel from default_runtime), as
# mmseg's ADE20K tta_pipeline with fewer scales. The metric compares with the original labels.
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (0.75, 1.0, 1.25)],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ])
]
dataset_common = dict(
    type=dataset_type,
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        **dataset_common,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        **dataset_common,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='LongTailIoUMetric',
    iou_metrics=['mIoU'],
    class_frequencies=class_frequencies,
    thresholds=(0.01, 0.001))
test_evaluator = val_evaluator
