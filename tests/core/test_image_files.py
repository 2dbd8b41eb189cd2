"""The file checks of disalign_core.image_files on hand-made files: what the header check finds
(cut-short JPEG and PNG, unknown format, another size, EXIF orientation), what only the full
check finds, what neither refuses (bytes after a complete image), and label-map values."""

import io

import numpy as np
import pytest
from PIL import Image

from disalign_core.image_files import (
    image_file_problem,
    label_map_values,
    run_parallel,
    sample,
    shard,
)


def _photo(size=(64, 48)):
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def files(tmp_path):
    jpeg, png = tmp_path / "a.jpg", tmp_path / "a.png"
    _photo().save(jpeg, quality=90)
    _photo().save(png)
    return jpeg, png


def test_complete_images_pass_both_checks(files):
    for path in files:
        assert image_file_problem(str(path)) is None
        assert image_file_problem(str(path), decode=True) is None
        assert image_file_problem(str(path), expected_size=(64, 48)) is None


@pytest.mark.parametrize("index", [0, 1], ids=["jpeg", "png"])
def test_cut_short_file_is_found_by_the_header_check(files, index, tmp_path):
    data = files[index].read_bytes()
    cut = tmp_path / f"cut{files[index].suffix}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    problem = image_file_problem(str(cut))
    assert problem.startswith("is cut short or damaged (OSError: image file is truncated")


def test_bytes_after_a_complete_image_are_not_refused(files, tmp_path):
    tail = tmp_path / "tail.jpg"
    tail.write_bytes(files[0].read_bytes() + b"appended by a camera" * 50)
    assert image_file_problem(str(tail)) is None  # decoded in full to decide


def test_damage_inside_a_png_only_the_full_check_finds(files, tmp_path):
    data = bytearray(files[1].read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(16)
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(bytes(data))
    assert image_file_problem(str(damaged)) is None  # header and end intact
    assert image_file_problem(str(damaged), decode=True) == (
        "cannot be decoded (OSError: broken data stream when reading image file)"
    )


def test_missing_unknown_and_other_size(files, tmp_path):
    assert image_file_problem(str(tmp_path / "nope.jpg")) == "does not exist"
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    assert image_file_problem(str(text)).startswith("is not an image file PIL can read")
    assert image_file_problem(str(files[0]), expected_size=(48, 64)) == (
        "is 64x48 pixels (after its EXIF orientation) but the annotations say 48x64"
    )


def test_exif_rotation_swaps_the_size_as_detectron2_reads_it(tmp_path):
    image = _photo()
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: detectron2's read_image returns 48x64
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes())
    assert image_file_problem(str(path), expected_size=(48, 64)) is None
    assert "is 48x64 pixels" in image_file_problem(str(path), expected_size=(64, 48))


def test_label_map_values(tmp_path):
    labels = np.zeros((8, 8), np.uint8)
    labels[2:4, 2:4] = 199
    labels[0, 0] = 255
    Image.fromarray(labels).save(tmp_path / "l.png")
    assert label_map_values(str(tmp_path / "l.png")) == ([0, 199, 255], None)
    wide = np.full((4, 4), 300, np.uint16)
    Image.fromarray(wide).save(tmp_path / "l16.png")
    assert label_map_values(str(tmp_path / "l16.png")) == ([300], None)
    _photo().save(tmp_path / "colour.png")
    values, problem = label_map_values(str(tmp_path / "colour.png"))
    assert values == [] and problem.startswith("has 3 channels (PIL mode 'RGB')")
    buf = io.BytesIO()
    Image.fromarray(labels).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:40])
    assert label_map_values(str(tmp_path / "cut.png"))[1].startswith("cannot be decoded")


def test_parallel_shard_and_sample_keep_every_item_once():
    items = list(range(103))
    assert run_parallel(lambda x: x * 2, items, num_threads=4) == [x * 2 for x in items]
    parts = [shard(items, r, 3) for r in range(3)]
    assert sorted(x for p in parts for x in p) == items
    chosen = sample(items, 10, seed=1)
    assert len(chosen) == 10 and chosen == sorted(chosen) and chosen == sample(items, 10, seed=1)
    assert sample(items, None) == items and sample(items, 500) == items
