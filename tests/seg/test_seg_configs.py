import glob
import os

import mmseg
import pytest
import yaml
from mmengine.config import Config
from mmseg.registry import MODELS
from seg_testing import REPO

from disalign_seg import DisAlignHead

CONFIG_DIR = os.path.join(REPO, "configs", "mmseg")
CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(CONFIG_DIR, "**", "*.py"), recursive=True)
    if "_base_" not in p
)
ADE_STAGE2 = [p for p in CONFIGS if os.path.basename(p).startswith("disalign_") and "ade20k" in p]


def test_the_shipped_config_tree_is_complete():
    names = {os.path.relpath(p, CONFIG_DIR) for p in CONFIGS}
    for algo in ("fcn", "deeplabv3plus"):
        for depth in ("r50", "r101"):
            assert f"{algo}_{depth}-d8_4xb4-160k_ade20k-512x512.py" in names
            assert f"disalign_{algo}_{depth}-d8_8xb4-8k_ade20k-512x512.py" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, CONFIG_DIR))
def test_config_loads(path):
    cfg = Config.fromfile(path)
    assert "disalign_seg" in cfg.custom_imports["imports"]
    assert cfg.val_evaluator["type"] == "LongTailIoUMetric"
    if os.path.basename(path).startswith("disalign_"):
        assert cfg.model.type == "DisAlignEncoderDecoder" and cfg.model.freeze_for_calibration
        head = cfg.model.decode_head
        assert head.type == "DisAlignHead"
        assert head.head in ("FCNHead", "DepthwiseSeparableASPPHead")
        assert head.loss_decode.type == "GRWCrossEntropyLoss"
        assert head.loss_decode.rho == (1.0 if "tiny" in path else 0.3)
        keys = {"type", "class_frequencies", "rho", "loss_weight"}
        if "tiny" in path:  # the demo's measured setting: torch's weighted mean (default)
            assert set(head.loss_decode) == keys
        else:  # paper eq. 9 / the authors' code: mean over all pixels
            assert set(head.loss_decode) == keys | {"avg_mode"}
            assert head.loss_decode.avg_mode == "all"
        assert cfg.model.auxiliary_head.loss_decode.loss_weight == 0.0
        # Stage 1 comes through the model, not load_from, so that plain --resume works.
        assert cfg.model.stage1_checkpoint.endswith(".pth") and cfg.get("load_from") is None
    assert dict(type="DisAlignDataCheckHook") in cfg.custom_hooks


@pytest.mark.parametrize("path", ADE_STAGE2, ids=os.path.basename)
def test_ade20k_stage2_schedule(path):
    cfg = Config.fromfile(path)
    assert cfg.train_cfg.max_iters == 8000
    assert cfg.optim_wrapper.optimizer.lr == 0.01
    # The paper's stage-2 batch: 8 GPUs x 4 images = 32, the LR's base for auto_scale_lr.
    assert cfg.train_dataloader.batch_size == 4 and "8xb4" in os.path.basename(path)
    # on fewer processes the LR is scaled linearly from 0.01 at 32 images, and the log says so
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=32)
    assert cfg.custom_hooks == [
        dict(type="DisAlignDataCheckHook"),
        dict(type="DisAlignRecipeGuardHook"),
        dict(type="DisAlignBatchSizeHook"),
    ]
    assert cfg.param_scheduler[0].type == "PolyLR" and cfg.param_scheduler[0].end == 8000
    assert cfg.model.pretrained is None  # all weights from the stage-1 checkpoint
    # By default stage 2 starts from mmseg's public 160k checkpoint of the stage-1 config.
    stage1 = os.path.basename(path).replace("disalign_", "").replace("8xb4-8k", "4xb4-160k")
    assert cfg.model.stage1_checkpoint == public_checkpoint(stage1[:-3])
    assert cfg.model.decode_head.num_classes == 150
    assert ("r101" in path) == (cfg.model.backbone.depth == 101)


def public_checkpoint(name):
    """The URL of mmseg's checkpoint of config ``name`` in the installed wheel's metafile (the
    160k one: mmseg 1.2.2 lists deeplabv3plus_r101-d8_4xb4-160k twice, once with the 80k
    checkpoint)."""
    algo = name.split("_")[0]
    with open(
        os.path.join(os.path.dirname(mmseg.__file__), ".mim", "configs", algo, "metafile.yaml")
    ) as f:
        models = yaml.safe_load(f)["Models"]
    urls = [m["Weights"] for m in models if m["Name"] == name and "_160k_" in m["Weights"]]
    assert len(urls) == 1, (name, urls)
    return urls[0]


def test_ade20k_stage2_model_builds_with_a_frequency_file(tmp_path):
    freq = tmp_path / "objectInfo150.txt"
    freq.write_text(
        "Idx\tRatio\tTrain\tVal\tName\n"
        + "".join(f"{i + 1}\t{0.2 / (i + 1):.6f}\t10\t1\tc{i}\n" for i in range(150))
    )
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, "disalign_fcn_r50-d8_8xb4-8k_ade20k-512x512.py"))
    cfg.model.decode_head.loss_decode.class_frequencies = str(freq)
    for norm in (cfg.model.backbone, cfg.model.decode_head, cfg.model.auxiliary_head):
        norm.norm_cfg = dict(type="BN", requires_grad=True)  # SyncBN needs a process group
    model = MODELS.build(cfg.model)
    assert isinstance(model.decode_head, DisAlignHead)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.startswith("decode_head.calibration.") for n in trainable) and len(trainable) == 4
