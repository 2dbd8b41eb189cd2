# The paper's classification schedule (supplement, "Configuration Detail"): SGD, momentum 0.9,
# batch 256, cosine LR from 0.1 to 0; weight decay 5e-4 (its authors' ImageNet-LT config).
# Stage-1 configs set max_epochs (90, or 30 for Places-LT); the DisAlign stage-2 configs restart
# the same schedule for 10 (ImageNet-LT, Places-LT) or 30 (iNaturalist 2018) epochs.
max_epochs = 90
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False))
param_scheduler = dict(
    type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=0.0,
    convert_to_iter_based=True)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=10)
val_cfg = dict()
test_cfg = dict()
# 4 GPUs x 64 images; --auto-scale-lr scales the LR linearly for another total batch.
auto_scale_lr = dict(base_batch_size=256)
