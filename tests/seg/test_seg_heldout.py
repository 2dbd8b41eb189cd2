"""The held-out calibration split for MMSegmentation (``DisAlignHeldOutSubset`` in mmseg's
DATASETS): the parts of a generated long-tailed dataset, the classes read from its label maps,
and both stages' stock train loops on their parts."""

import copy
import os

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmseg.registry import DATASETS
from PIL import Image
from seg_testing import REPO

from disalign_core import write_class_frequencies
from disalign_demo.seg import SyntheticLongTailSpec, generate_ade20k_synthetic
from disalign_seg import DisAlignHeldOutSubset, count_class_pixels
from disalign_seg.heldout_dataset import label_map_classes

TINY = os.path.join(REPO, "configs", "mmseg", "tiny")
STAGE1 = os.path.join(TINY, "fcn_r18-tiny-d4_1xb8-600_synthetic-64x64.py")
STAGE2 = os.path.join(TINY, "disalign_fcn_r18-tiny-d4_1xb8-200_synthetic-64x64.py")
SPEC = SyntheticLongTailSpec(num_train=40, num_val=4, body_image_share=0.3, tail_train_images=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("heldout") / "data")
    meta = generate_ade20k_synthetic(root, SPEC, seed=3)
    counts = count_class_pixels(
        os.path.join(root, "annotations", "training"),
        SPEC.num_classes,
        reduce_zero_label=True,
        progress=False,
    )
    write_class_frequencies(
        os.path.join(root, "pixel_frequencies.json"), [int(c) for c in counts], meta["classes"]
    )
    return root, meta["classes"]


def _train_set(root, classes):
    return dict(
        type="BaseSegDataset",
        data_root=root,
        metainfo=dict(classes=classes),
        img_suffix=".jpg",
        seg_map_suffix=".png",
        reduce_zero_label=True,
        data_prefix=dict(img_path="images/training", seg_map_path="annotations/training"),
        pipeline=[],
    )


def _part(root, classes, part, **kw):
    return DATASETS.build(
        dict(type="DisAlignHeldOutSubset", dataset=_train_set(root, classes), part=part, **kw)
    )


def _paths(dataset):
    return [dataset.get_data_info(i)["img_path"] for i in range(len(dataset))]


def _map_classes(path):
    """A label map's classes computed here: ADE20K's convention, 0 unlabelled, v -> v - 1."""
    values = np.unique(np.asarray(Image.open(path)))
    return sorted(int(v) - 1 for v in values if 0 < v < 255)


def test_parts_are_disjoint_complete_deterministic_and_keep_the_class_profile(data):
    root, classes = data
    full = DATASETS.build(_train_set(root, classes))
    stage1 = _part(root, classes, "stage1", fraction=0.25, seed=0)
    calib = _part(root, classes, "calibration", fraction=0.25, seed=0)
    p1, pc = _paths(stage1), _paths(calib)
    assert len(stage1) == len(p1) and len(calib) == len(pc)
    assert not set(p1) & set(pc)
    assert sorted(p1 + pc) == sorted(_paths(full))
    assert 0.15 * len(full) <= len(pc) <= 0.35 * len(full)
    # Same dataset, fraction and seed: the same split; another seed: another one.
    assert _paths(_part(root, classes, "calibration", fraction=0.25, seed=0)) == pc
    assert _paths(_part(root, classes, "calibration", fraction=0.25, seed=1)) != pc
    # The items' classes are those of their label maps (reduce_zero_label honoured).
    labels = stage1.item_labels()
    assert labels == [_map_classes(full.get_data_info(i)["seg_map_path"]) for i in range(len(full))]
    # Class profile: every class of the training set keeps items in stage 1; a class with
    # several items gives some to calibration; no class is all in one part by accident.
    per_class = {c: [i for i, ls in enumerate(labels) if c in ls] for c in range(len(classes))}
    in_calib = set(calib.indices)
    for c, items in per_class.items():
        assert items, f"class {c} absent from the generated data"
        assert any(i not in in_calib for i in items), c
    tail = [c for c in range(len(classes)) if classes[c].startswith("tail")]
    assert any(i in in_calib for c in tail for i in per_class[c])
    # The wrapper passes the wrapped dataset's meta information and items through.
    assert list(stage1.metainfo["classes"]) == list(classes)
    item = calib[0]
    assert item["img_path"] == pc[0] and item["reduce_zero_label"] is True


def test_lazy_init_splits_at_first_access(data):
    root, classes = data
    lazy = _part(root, classes, "calibration", lazy_init=True)
    assert lazy.split is None and not lazy._fully_initialized
    assert len(lazy) == len(lazy.indices) > 0 and lazy.split is not None


def test_label_map_classes_honour_reduce_zero_label_label_map_and_ignore(tmp_path):
    path = str(tmp_path / "m.png")
    Image.fromarray(np.array([[0, 1, 3], [255, 3, 7]], dtype=np.uint8)).save(path)
    assert label_map_classes(path, 5) == [0, 1, 3]  # 7 is no class of 5, 255 ignored
    assert label_map_classes(path, 5, reduce_zero_label=True) == [0, 2]  # 0 -> 255, v -> v-1
    assert label_map_classes(path, 5, reduce_zero_label=True, label_map={2: 4}) == [0, 4]
    with pytest.raises(ValueError, match="does not exist"):
        label_map_classes(str(tmp_path / "missing.png"), 5)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(fraction=1.5), r"DisAlignHeldOutSubset.fraction = 1.5: expected .* in \(0, 1\)"),
        (dict(fraction=0), r"DisAlignHeldOutSubset.fraction = 0"),
        (dict(fraction="a"), r"DisAlignHeldOutSubset.fraction = 'a'"),
        (dict(part="stage2"), r"DisAlignHeldOutSubset.part = 'stage2': expected one of"),
        (dict(seed=0.5), r"DisAlignHeldOutSubset.seed = 0.5: expected an integer"),
    ],
)
def test_bad_options_are_refused_naming_the_key(data, kw, message):
    root, classes = data
    kw = dict(dict(part="stage1"), **kw)
    with pytest.raises(ValueError, match=message):
        DisAlignHeldOutSubset(dataset=_train_set(root, classes), **kw)


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
        type="DisAlignHeldOutSubset", dataset=wrapped, fraction=0.25, part=part, seed=0
    )
    cfg.train_dataloader.batch_size = 4
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = iters
    cfg.param_scheduler[0].end = iters
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = work_dir
    cfg.merge_from_dict(options)
    return cfg


def test_both_stages_train_on_their_part_in_the_stock_loop(data, tmp_path, monkeypatch):
    root, classes = data
    monkeypatch.setenv("DISALIGN_SEG_DATA", root)  # the tiny configs' data folder
    stage1_part = set(_paths(_part(root, classes, "stage1", fraction=0.25)))
    calib_part = set(_paths(_part(root, classes, "calibration", fraction=0.25)))

    runs = {}
    for stage, path, part, extra in (
        ("stage1", STAGE1, "stage1", {}),
        ("stage2", STAGE2, "calibration", None),
    ):
        w = str(tmp_path / stage)
        if extra is None:  # stage 2 from stage 1's checkpoint, calibrating on the withheld part
            extra = {
                "model.stage1_checkpoint": os.path.join(str(tmp_path / "stage1"), "iter_6.pth")
            }
        runner = Runner.from_cfg(_config(path, root, w, part, 6, **extra))
        seen = _SeenImages()
        runner.register_hook(seen, "LOWEST")
        runner.train()
        dataset = runner.train_dataloader.dataset
        assert isinstance(dataset, DisAlignHeldOutSubset) and dataset.part == part
        runs[stage] = (len(dataset), set(seen.paths), len(seen.paths))
        assert os.path.exists(os.path.join(w, "iter_6.pth"))

    n1, seen1, count1 = runs["stage1"]
    n2, seen2, count2 = runs["stage2"]
    assert n1 == len(stage1_part) and n2 == len(calib_part)
    assert count1 == count2 == 6 * 4  # every iteration's batch recorded
    assert seen1 <= stage1_part and seen2 <= calib_part  # each stage saw only its part
    # the calibration part is small: 6 batches of 4 go through it, so stage 2 saw all of it
    assert seen2 == calib_part
