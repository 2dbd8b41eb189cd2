# iNaturalist 2018 (Van Horn et al. 2018; 8142 species, 437.5K training images, 2 to 1000 per
# class) with the long-tail literature's split files iNaturalist18_{train,val}.txt ('path label'
# lines, paths relative to the dataset root: train_val2018/...), placed in data/inat2018/.
# Everything else (preprocessing, the paper's augmentations, 64 images per GPU, the long-tail
# metric) as ImageNet-LT's base.
_base_ = './imagenet_lt_bs64.py'

dataset_type = 'CustomDataset'
data_root = 'data/inat2018'
num_classes = 8142
# Training images per class for the GRW loss and the long-tail metric, counted from the
# training split file (no image is read).
class_frequencies = dict(
    type=dataset_type, data_root=data_root, ann_file='iNaturalist18_train.txt', data_prefix='')

data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, ann_file='iNaturalist18_train.txt'))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, ann_file='iNaturalist18_val.txt'))
# iNaturalist 2018 has no labelled test split: the paper reports the val split (3 per class).
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, ann_file='iNaturalist18_val.txt'))
val_evaluator = dict(class_frequencies=class_frequencies)
test_evaluator = val_evaluator
