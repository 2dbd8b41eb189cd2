"""The shipped MMPretrain configs parse with mmengine, carry the paper's settings, and build
(full size with stand-in class counts: the data sets are not on this machine)."""

import glob
import os

import pytest
from cls_testing import REPO
from mmengine.config import Config
from mmpretrain.registry import MODELS

CONFIGS = os.path.join(REPO, "configs", "mmpretrain")
# config -> (dataset, stage, epochs, rho or None, head)
FULL = {
    "resnext50-32x4d_4xb64-90e_imagenet-lt.py": ("ImageNet_LT", 1, 90, None, "LinearClsHead"),
    "resnext50-32x4d-cos_4xb64-90e_imagenet-lt.py": ("ImageNet_LT", 1, 90, None, "CosineClsHead"),
    "disalign_resnext50-32x4d_4xb64-10e_imagenet-lt.py": (
        "ImageNet_LT",
        2,
        10,
        1.2,
        "LinearClsHead",
    ),
    "disalign_resnext50-32x4d-cos_4xb64-10e_imagenet-lt.py": (
        "ImageNet_LT",
        2,
        10,
        1.5,
        "CosineClsHead",
    ),
    "resnet50_4xb64-90e_inat2018.py": ("iNaturalist18", 1, 90, None, "LinearClsHead"),
    "disalign_resnet50_4xb64-30e_inat2018.py": ("iNaturalist18", 2, 30, 1.2, "LinearClsHead"),
    "resnet152_4xb64-30e_places-lt.py": ("Places_LT", 1, 30, None, "LinearClsHead"),
    "disalign_resnet152_4xb64-10e_places-lt.py": ("Places_LT", 2, 10, 1.2, "LinearClsHead"),
}


def test_every_shipped_config_is_listed():
    shipped = {os.path.basename(p) for p in glob.glob(os.path.join(CONFIGS, "*.py"))}
    assert shipped == set(FULL)


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_size_config_carries_the_paper_settings_and_builds(name):
    dataset, stage, epochs, rho, head = FULL[name]
    cfg = Config.fromfile(os.path.join(CONFIGS, name))
    assert cfg.custom_imports["imports"] == ["disalign_cls"]
    assert cfg.train_cfg.max_epochs == epochs and cfg.param_scheduler.end == epochs
    assert cfg.param_scheduler.type == "CosineAnnealingLR" and cfg.param_scheduler.eta_min == 0
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == ("SGD", 0.1, 0.9, 5e-4)
    assert cfg.train_dataloader.batch_size * 4 == cfg.auto_scale_lr.base_batch_size == 256
    # stage 2: the LR scaled linearly on another total batch, and the log says so; stage 1 as
    # MMPretrain's configs (tools/train.py --auto-scale-lr turns it on)
    assert cfg.auto_scale_lr.get("enable", False) == (stage == 2)
    assert (dict(type="DisAlignBatchSizeHook") in cfg.custom_hooks) == (stage == 2)
    assert dict(type="DisAlignRecipeGuardHook") in cfg.custom_hooks
    assert cfg.train_dataloader.dataset.ann_file == f"{dataset}_train.txt"
    assert cfg.test_evaluator.type == "LongTailAccuracy"
    assert cfg.test_evaluator.class_frequencies.ann_file == f"{dataset}_train.txt"
    k = cfg.num_classes
    model_cfg = cfg.model
    if stage == 1:
        assert model_cfg.type == "ImageClassifier" and model_cfg.head.type == head
    else:
        assert model_cfg.type == "DisAlignImageClassifier" and model_cfg.freeze_for_calibration
        assert model_cfg.head.type == "DisAlignClsHead" and model_cfg.head.head == head
        loss = model_cfg.head.loss
        assert loss.type == "GRWCrossEntropyLoss" and loss.rho == rho
        assert loss.class_frequencies.ann_file == f"{dataset}_train.txt"
        loss.class_frequencies = [float(c + 1) for c in range(k)]  # stand-in for the split file
        model_cfg.stage1_checkpoint = None
    if stage == 1:  # the whole stage-1 network is built within its stage-2 config
        head = MODELS.build(model_cfg.head)
        assert head.fc.weight.shape == (k, 2048)
        return
    model_cfg.backbone.pop("init_cfg", None)  # no download of ImageNet weights here
    model = MODELS.build(model_cfg)
    assert model.head.num_classes == k and model.head.classifier.weight.shape == (k, 2048)
    if stage == 2:
        assert sorted(model.trainable_parameter_names) == sorted(
            f"head.calibration.{n}"
            for n in ("alpha", "beta", "confidence_weight", "confidence_bias")
        )


@pytest.mark.parametrize("name", sorted(glob.glob(os.path.join(CONFIGS, "tiny", "*.py"))))
def test_tiny_configs_parse(name):
    cfg = Config.fromfile(name)
    assert cfg.num_classes == 16 and cfg.model.head.num_classes == 16
    if os.path.basename(name).startswith("disalign_"):
        assert cfg.model.head.loss.rho == (1.5 if "-cos" in name else 1.2)
