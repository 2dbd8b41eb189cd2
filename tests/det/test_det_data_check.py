"""Damaged images of a detectron2 dataset, through disalign_det.engine.main (what
projects/DisAlign/train_net.py runs): the check before training finds cut-short images and images
of another size than the json says (DISALIGN_CHECK_IMAGES=headers, the default), or every
undecodable image (=full); what the header check cannot see is named by the data loader
(training and evaluation) instead of PIL's anonymous error. Nothing is written in any case."""

import os
import shutil

import pytest
from det_testing import NUM_CLASSES, REPO, TRAIN, VAL
from PIL import Image

from disalign_demo.det import add_tiny_backbone_config
from disalign_det import engine
from disalign_det.data import ImageReadError, image_check_settings

STAGE1_CFG = os.path.join(REPO, "configs", "detectron2", "quick_schedules", "mask_rcnn_tiny_instant_test.yaml")  # fmt: skip


def run(argv):
    return engine.main(engine.argument_parser().parse_args(argv), (add_tiny_backbone_config,))


def opts(tmp_path, train=TRAIN, test=VAL, max_iter=4):
    return [
        "--config-file", STAGE1_CFG,
        "DATASETS.TRAIN", f"('{train}',)",
        "DATASETS.TEST", f"('{test}',)",
        "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES),
        "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.IMS_PER_BATCH", "2",
        "OUTPUT_DIR", str(tmp_path / "out"),
    ]  # fmt: skip


def copy_split(info, tmp_path, split):
    """A copy of the split's image folder, as ``image_root/split`` under tmp_path."""
    root = tmp_path / "images"
    shutil.copytree(os.path.join(info["image_root"], split), root / split)
    return root


def cut_short(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def damage_inside(path):
    """Zero 16 bytes in the middle of a PNG: header and end intact, pixels undecodable.
    (detectron2's read_image returns such a PNG half-decoded, without an error.)"""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)
    path.write_bytes(bytes(data))


def undecodable_jpeg(path):
    """The same image as a JPEG (PIL reads by content, not name) whose Huffman table is
    damaged: header and end intact, and detectron2's read_image raises PIL's bare error."""
    with Image.open(path) as im:
        im.convert("RGB").save(path, format="JPEG", quality=90)
    data = bytearray(path.read_bytes())
    table = data.index(b"\xff\xc4")
    data[table + 5 : table + 21] = b"\xff" * 16
    path.write_bytes(bytes(data))


def no_checkpoint(tmp_path):
    written = [p.name for p in tmp_path.rglob("*") if p.suffix == ".pth"]
    assert not written and not list(tmp_path.rglob("last_checkpoint")), written


def test_cut_short_and_resized_training_images_fail_before_training(synth_dataset, tmp_path):
    info = synth_dataset
    root = copy_split(info, tmp_path, "train")
    cut_short(root / "train" / "000002.png")
    with Image.open(root / "train" / "000005.png") as im:
        im.resize((32, 32)).save(root / "train" / "000005.png")
    name = "det_check_damaged_train"
    with pytest.raises(ImageReadError) as e:
        run(["--register", name, info["train_json"], str(root), *opts(tmp_path, train=name)])
    msg = str(e.value)
    assert "checked before training: format, size and complete end; DISALIGN_CHECK_IMAGES=headers" in msg  # fmt: skip
    assert f"DATASETS.TRAIN: dataset '{name}' (json_file '{info['train_json']}'" in msg
    assert "2 of " in msg and "DATASETS.TEST" not in msg
    assert f"{root / 'train' / '000002.png'}: is cut short or damaged (OSError: image file is truncated" in msg  # fmt: skip
    assert f"{root / 'train' / '000005.png'}: is 32x32 pixels (after its EXIF orientation) but the annotations say 64x64" in msg  # fmt: skip
    assert "Fix: copy or download these images again" in msg and "remove them from the json" in msg
    no_checkpoint(tmp_path)


def test_undecodable_images_the_loader_names_then_the_full_check_lists(
    synth_dataset, tmp_path, monkeypatch
):
    """Evaluation: the header check passes, the test loader names the image (not PIL's bare
    'broken data stream'); DISALIGN_CHECK_IMAGES=full lists every such image before, also a
    damaged PNG detectron2 would read half-decoded without an error."""
    info = synth_dataset
    root = copy_split(info, tmp_path, "val")
    for f in ("000001.png", "000004.png"):
        undecodable_jpeg(root / "val" / f)
    damage_inside(root / "val" / "000006.png")
    name = "det_check_damaged_val"
    argv = ["--eval-only", "--register", name, info["val_json"], str(root), *opts(tmp_path, test=name)]  # fmt: skip
    with pytest.raises(ImageReadError) as e:
        run(argv)
    msg = str(e.value)
    assert f"cannot read the image {root / 'val' / '000001.png'} (OSError: broken data stream when reading image file), listed by DATASETS.TEST: '{name}' (json_file '{info['val_json']}'" in msg  # fmt: skip
    assert (
        "DISALIGN_CHECK_IMAGES=full, which decodes every image" in msg
        and "Fix: copy or download this image again" in msg
    )

    monkeypatch.setenv("DISALIGN_CHECK_IMAGES", "full")
    with pytest.raises(ImageReadError) as e:
        run(argv)
    msg = str(e.value)
    assert "every pixel decoded; DISALIGN_CHECK_IMAGES=full" in msg
    assert f"DATASETS.TEST: dataset '{name}'" in msg and "3 of " in msg
    for f in ("000001.png", "000004.png"):
        assert f"{root / 'val' / f}: cannot be decoded (OSError: broken data stream" in msg
    assert f"{root / 'val' / '000006.png'}: cannot be decoded (OSError: " in msg
    no_checkpoint(tmp_path)


def test_training_loader_in_a_worker_process_names_the_image(synth_dataset, tmp_path):
    info = synth_dataset
    root = copy_split(info, tmp_path, "train")
    for path in (root / "train").iterdir():
        undecodable_jpeg(path)
    name = "det_check_undecodable_train"
    argv = ["--register", name, info["train_json"], str(root), *opts(tmp_path, train=name),
            "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", "1"]  # fmt: skip
    with pytest.raises(ImageReadError) as e:
        run(argv)
    msg = str(e.value)
    assert "Caught ImageReadError in DataLoader worker process 0" in msg
    assert f"cannot read the image {root / 'train'}" in msg and "broken data stream" in msg
    assert f"listed by DATASETS.TRAIN: '{name}'" in msg and "DISALIGN_CHECK_IMAGES=full" in msg
    no_checkpoint(tmp_path)


def test_check_settings_from_the_environment():
    assert image_check_settings({}) == ("headers", None)
    assert image_check_settings({"DISALIGN_CHECK_IMAGES": "FULL"}) == ("full", None)
    env = {"DISALIGN_CHECK_IMAGES": "exists", "DISALIGN_CHECK_IMAGES_SAMPLE": "500"}
    assert image_check_settings(env) == ("exists", 500)
    with pytest.raises(ValueError, match=r"DISALIGN_CHECK_IMAGES='decode': expected one of"):
        image_check_settings({"DISALIGN_CHECK_IMAGES": "decode"})
    with pytest.raises(ValueError, match=r"DISALIGN_CHECK_IMAGES_SAMPLE='0': expected a number"):
        image_check_settings({"DISALIGN_CHECK_IMAGES_SAMPLE": "0"})
