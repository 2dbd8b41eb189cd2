# Places-LT (Liu et al. 2019; 365 classes, 62.5K training images, 5 to 4980 per class) with
# the standard split files Places_LT_{train,val,test}.txt ('path label' lines, paths relative
# to the Places365 root, e.g. data_256/a/airfield/..., val_256/...), placed in data/places365/.
# Everything else (preprocessing, the paper's augmentations, 64 images per GPU, the long-tail
# metric) as ImageNet-LT's base.
_base_ = './imagenet_lt_bs64.py'

dataset_type = 'CustomDataset'
data_root = 'data/places365'
num_classes = 365
# Training images per class for the GRW loss and the long-tail metric, counted from the
# training split file (no image is read).
class_frequencies = dict(
    type=dataset_type, data_root=data_root, ann_file='Places_LT_train.txt', data_prefix='')

data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, ann_file='Places_LT_train.txt'))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, ann_file='Places_LT_val.txt'))
# The paper reports the test split (100 images per class: Places365's validation set; the
# val split has 20 per class).
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, ann_file='Places_LT_test.txt'))
val_evaluator = dict(class_frequencies=class_frequencies)
test_evaluator = val_evaluator
