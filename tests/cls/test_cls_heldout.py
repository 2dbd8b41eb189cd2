"""The held-out calibration split for MMPretrain (``DisAlignHeldOutSubset`` in MMPretrain's
DATASETS): the parts of the demo's generated long-tailed dataset and both stages' stock train
loops on their parts."""

import copy
import os
from collections import Counter

import pytest
from cls_testing import TINY
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmpretrain.datasets import CustomDataset
from mmpretrain.registry import DATASETS

from disalign_cls import DisAlignHeldOutSubset
from disalign_demo.cls import generate_cls_synthetic

STAGE1 = os.path.join(TINY, "resnet18-tiny_1xb64-400it_synthetic-32x32.py")
STAGE2 = os.path.join(TINY, "disalign_resnet18-tiny_1xb64-200it_synthetic-32x32.py")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("heldout") / "data")
    generate_cls_synthetic(root, seed=2, test_per_class=2)
    return root


def _train_set(root):
    return dict(
        type="CustomDataset",
        data_root=root,
        ann_file="meta/train.txt",
        with_label=True,
        pipeline=[],
    )


def _part(root, part, **kw):
    return DATASETS.build(
        dict(type="DisAlignHeldOutSubset", dataset=_train_set(root), part=part, **kw)
    )


def _items(dataset):
    return [
        (dataset.get_data_info(i)["img_path"], int(dataset.get_data_info(i)["gt_label"]))
        for i in range(len(dataset))
    ]


def test_parts_are_disjoint_complete_deterministic_and_stratified_by_class(data):
    full = DATASETS.build(_train_set(data))
    stage1 = _part(data, "stage1", fraction=0.2, seed=0)
    calib = _part(data, "calibration", fraction=0.2, seed=0)
    i1, ic = _items(stage1), _items(calib)
    assert not {p for p, _ in i1} & {p for p, _ in ic}
    assert sorted(i1 + ic) == sorted(_items(full))
    # Every class gives round(0.2 n) of its n images to calibration (never all of them), so
    # both parts keep the training set's class profile.
    n = Counter(label for _, label in _items(full))
    nc = Counter(label for _, label in ic)
    assert len(n) == 16 and min(n.values()) == 5
    for label, count in n.items():
        assert nc[label] == min(round(0.2 * count), count - 1), label
    # deterministic; the seed changes which images, not how many per class
    assert _items(_part(data, "calibration", fraction=0.2, seed=0)) == ic
    other = _items(_part(data, "calibration", fraction=0.2, seed=1))
    assert other != ic and Counter(label for _, label in other) == nc
    # The items are the wrapped dataset's; the classes come from get_cat_ids (no image read).
    assert stage1.metainfo == full.metainfo
    assert calib.get_cat_ids(0) == [ic[0][1]]
    assert calib[0]["img_path"] == ic[0][0]


def test_a_built_dataset_and_lazy_init(data):
    dataset = CustomDataset(data_root=data, ann_file="meta/train.txt", with_label=True)
    lazy = DisAlignHeldOutSubset(dataset=dataset, fraction=0.5, part="calibration", lazy_init=True)
    assert lazy.split is None
    assert len(lazy) == len(lazy.split.calibration) and lazy.dataset is dataset
    with pytest.raises(NotImplementedError, match="get_subset"):
        lazy.get_subset(3)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(fraction=1.0), r"DisAlignHeldOutSubset.fraction = 1.0: expected .* in \(0, 1\)"),
        (dict(fraction=-0.2), r"DisAlignHeldOutSubset.fraction = -0.2"),
        (dict(fraction=None), r"DisAlignHeldOutSubset.fraction = None"),
        (dict(part="train"), r"DisAlignHeldOutSubset.part = 'train': expected one of"),
        (dict(dataset=[1]), r"DisAlignHeldOutSubset.dataset: expected a dataset config"),
    ],
)
def test_bad_options_are_refused_naming_the_key(data, kw, message):
    kw = dict(dict(dataset=_train_set(data), part="stage1"), **kw)
    exc = TypeError if "dataset" in message.split(":")[0] else ValueError
    with pytest.raises(exc, match=message):
        DisAlignHeldOutSubset(**kw)


class _SeenImages(Hook):
    """Records the image path of every training sample the loop gives the model."""

    def __init__(self):
        self.paths = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.paths += [s.img_path for s in data_batch["data_samples"]]


def _config(path, root, work_dir, part, iters, **options):
    cfg = Config.fromfile(path)
    wrapped = copy.deepcopy(cfg.train_dataloader.dataset)
    cfg.train_dataloader.dataset = dict(
        type="DisAlignHeldOutSubset", dataset=wrapped, fraction=0.2, part=part, seed=0
    )
    cfg.train_dataloader.batch_size = 16
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = iters
    cfg.param_scheduler.end = iters
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = work_dir
    cfg.merge_from_dict(options)
    return cfg


def test_both_stages_train_on_their_part_in_the_stock_loop(data, tmp_path, monkeypatch):
    monkeypatch.setenv("DISALIGN_CLS_DATA", data)  # the tiny configs' data folder
    stage1_part = {p for p, _ in _items(_part(data, "stage1"))}
    calib_part = {p for p, _ in _items(_part(data, "calibration"))}

    runs = {}
    ckpt1 = os.path.join(str(tmp_path / "stage1"), "iter_4.pth")
    for stage, path, part, extra in (
        ("stage1", STAGE1, "stage1", {}),
        ("stage2", STAGE2, "calibration", {"model.stage1_checkpoint": ckpt1}),
    ):
        runner = Runner.from_cfg(_config(path, data, str(tmp_path / stage), part, 4, **extra))
        seen = _SeenImages()
        runner.register_hook(seen, "LOWEST")
        runner.train()
        dataset = runner.train_dataloader.dataset
        assert isinstance(dataset, DisAlignHeldOutSubset) and dataset.part == part
        runs[stage] = (len(dataset), set(seen.paths), len(seen.paths))
    assert os.path.exists(ckpt1)

    n1, seen1, count1 = runs["stage1"]
    n2, seen2, count2 = runs["stage2"]
    assert n1 == len(stage1_part) and n2 == len(calib_part)
    assert count1 == count2 == 4 * 16  # every iteration's batch recorded
    assert seen1 <= stage1_part and seen2 <= calib_part  # each stage saw only its part
