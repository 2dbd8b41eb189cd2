"""Frequency files with bad content: every error names the file, the config key and what is
expected; and re-weighting weights stay finite for every accepted rho."""

import copy
import io
import json
import pickle

import numpy as np
import pytest
import torch

from disalign_core import check_class_names, grw_class_weights, read_class_frequencies
from disalign_core.frequencies import (
    FORMAT_COUNTS_LIST,
    FORMAT_COUNTS_OBJECT,
    FORMAT_ID_COUNT_LIST,
    FORMAT_NUMPY,
    FORMAT_OBJECT_INFO,
    FORMAT_SEQUENCE,
    FORMAT_TEXT,
)

KEY = "MODEL.DISALIGN.FREQUENCY_FILE"


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("trunc.json", '{"counts": [1, 2', r"not valid JSON .*line 1, column"),
        ("word.json", '{"counts": [1, "abc"]}', r"count of class 1 is 'abc', not a number"),
        ("neg.json", '{"counts": [3, -1], "names": ["a", "b"]}', r"class 1 \('b'\) is -1"),
        ("nan.json", "[1, NaN]", r"class 1 is nan; counts must be finite"),
        ("short.json", '{"counts": [1, 2, 3], "names": ["a", "b"]}', r"3 counts but 2 names"),
        ("nocounts.json", '{"names": ["a"]}', r"needs a 'counts' list"),
        ("scalar.json", "7", r"got a JSON int"),
        ("empty.json", "[]", r"holds no class frequencies"),
        ("mixed.txt", "a 1\n2\n", r"1 of 2 lines have a class name"),
        ("neg.txt", "a 1\nb -4\n", r"class 1 \('b'\) is '-4'"),
    ],
)
def test_bad_frequency_files_name_file_key_and_fix(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        read_class_frequencies(str(path), key=KEY)
    message = str(info.value)
    assert name in message and KEY in message


def test_missing_file_names_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"missing.json.*{KEY}"):
        read_class_frequencies(str(tmp_path / "missing.json"), key=KEY)


def test_good_json_object_reads_counts_and_names(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps({"counts": [5, 0, 2.5], "names": ["a", "b", "c"]}))
    assert read_class_frequencies(str(path)) == ([5.0, 0.0, 2.5], ["a", "b", "c"])


@pytest.mark.parametrize("rho", [0.0, 0.8, 200.0, 1e3, 1e9])
def test_weights_finite_for_every_accepted_rho(rho):
    counts = [1e6, 5e4, 300, 10, 1]
    w = grw_class_weights(counts, rho)
    assert torch.isfinite(w).all()
    assert torch.isclose(w.sum(), torch.tensor(5.0), rtol=1e-5)
    # rarer classes never weigh less than more frequent ones
    assert torch.all(w[1:] >= w[:-1])


def test_huge_rho_puts_all_weight_on_the_rarest_class():
    w = grw_class_weights([1000, 10, 1], 1e9)
    assert torch.allclose(w, torch.tensor([0.0, 0.0, 3.0]))


def test_log_space_matches_direct_formula_at_moderate_rho():
    counts = torch.tensor([1000.0, 37.0, 2.0, 1.0], dtype=torch.float64)
    rho = 1.5
    direct = (counts / counts.sum()).pow(-rho)
    direct = direct / direct.sum() * 4
    assert torch.allclose(grw_class_weights(counts, rho), direct.float(), rtol=1e-6)


OBJECT_INFO = (
    "Idx\tRatio\tTrain\tVal\tName\n"
    "1\t0.1576\t11664\t1172\twall\n"
    "2\t0.1072\t6046\t612\tbuilding, edifice\n"
    "3\t0.0878\t8265\t796\tsky\n"
)


def test_ade20k_object_info_reads_ratios_as_shares_of_all_pixels(tmp_path):
    path = tmp_path / "objectInfo150.txt"
    path.write_text(OBJECT_INFO)
    frequencies = read_class_frequencies(str(path), key=KEY)
    counts, names = frequencies
    assert counts == [0.1576, 0.1072, 0.0878]
    assert names == ["wall", "building, edifice", "sky"]
    # Ratios are shares of every pixel (unlabelled ones too): not to be renormalised by their sum.
    assert frequencies.share_total == 1.0
    assert frequencies.source == repr(str(path))


def test_counts_are_shares_of_their_sum(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("# pixels\na\t10\nb\t5\n")
    frequencies = read_class_frequencies(path)  # os.PathLike as well as str
    assert frequencies == ([10.0, 5.0], ["a", "b"])
    assert frequencies.share_total is None


@pytest.mark.parametrize(
    "content, match",
    [
        (OBJECT_INFO + "4\tlots\t1\t1\tfloor\n", r"objectInfo150.txt:5: Ratio 'lots' is not"),
        (OBJECT_INFO + "4\t0.1\tfloor\n", r"objectInfo150.txt:5: expected 5 tab-separated"),
        (OBJECT_INFO + "4\t-0.1\t1\t1\tfloor\n", r"class 3 \('floor'\) is '-0.1'"),
        ("Idx\tRatio\tTrain\tVal\tName\n", r"holds no class frequencies"),
    ],
)
def test_bad_object_info_names_line_file_and_key(tmp_path, content, match):
    path = tmp_path / "objectInfo150.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        read_class_frequencies(str(path), key=KEY)
    assert KEY in str(info.value)


def test_a_list_is_a_source_too():
    frequencies = read_class_frequencies([3, 2.5, 0], key=KEY)
    assert frequencies == ([3.0, 2.5, 0.0], None)
    assert frequencies.source == "a list of 3 numbers" and frequencies.share_total is None
    with pytest.raises(ValueError, match=rf"a list of 2 numbers \(config key {KEY}\).*class 1"):
        read_class_frequencies([1, "x"], key=KEY)
    with pytest.raises(ValueError, match="holds no class frequencies"):
        read_class_frequencies([], key=KEY)


def test_result_survives_copy_and_pickle(tmp_path):
    path = tmp_path / "objectInfo150.txt"
    path.write_text(OBJECT_INFO)
    frequencies = read_class_frequencies(str(path))
    for clone in (copy.deepcopy(frequencies), pickle.loads(pickle.dumps(frequencies))):
        assert clone == frequencies and clone.names == frequencies.names
        assert clone.share_total == 1.0 and clone.source == frequencies.source
        assert clone.format == frequencies.format == FORMAT_OBJECT_INFO


def test_class_names_match_exactly_or_by_synonym():
    # exact names, ADE20K's synonym lists ("," or ";"), case and spaces ignored
    check_class_names(["a", "b_(x)"], ["a", "b_(x)"], source="f", key=KEY)
    check_class_names(
        ["building, edifice", "Television;TV receiver "],
        ["edifice", "tv receiver"],
        source="f",
        key=KEY,
    )
    # nothing to compare
    check_class_names(None, ["a"], source="f", key=KEY)
    check_class_names(["a"], None, source="f", key=KEY)


def test_class_name_errors_name_source_key_classes_and_fix():
    with pytest.raises(ValueError) as info:
        check_class_names(
            ["a", "b", "c"],
            ["a", "c", "b"],
            source="'f.json'",
            key=KEY,
            dataset="lvis_train",
            fix="FIX IT",
        )
    message = str(info.value)
    assert "'f.json'" in message and KEY in message and "lvis_train" in message
    assert "2 of 3 names differ (class 1: 'b' in the file, 'c' in the data" in message
    assert message.endswith("FIX IT")
    with pytest.raises(ValueError, match=r"list 2 classes but the dataset has 3: give the"):
        check_class_names(["a", "b"], ["a", "b", "c"], source="f", key=KEY)
    # A synonym must be a whole name, not a part of one.
    with pytest.raises(ValueError, match="1 of 1 names differ"):
        check_class_names(["building, edifice"], ["build"], source="f", key=KEY)


# The DisAlign authors' published files (release downloads linked from their
# instance_seg/README.md), written here in the shapes their code reads: num_shots_v1.0.json is a
# flat JSON list [id, count, id, count, ...] read with json.load(...)[1::2]; num_shots_v0.5.npy
# is an array of counts read with np.load and used as it is.


def test_authors_v1_json_id_count_list(tmp_path):
    path = tmp_path / "num_shots_v1.0.json"
    path.write_text(json.dumps([1, 120, 2, 7, 3, 0, 4, 55]))
    frequencies = read_class_frequencies(str(path), key=KEY)
    assert frequencies == ([120.0, 7.0, 0.0, 55.0], None)
    assert frequencies.format == FORMAT_ID_COUNT_LIST
    # what the authors' code takes: every second entry
    assert frequencies.counts == json.loads(path.read_text())[1::2]
    # with the expected class count, a list of 2K entries is read as pairs even for K = 1 ...
    path.write_text("[1, 9]")
    assert read_class_frequencies(str(path), KEY, num_classes=1).counts == [9.0]
    # ... and a list of K entries is always K counts, even if it looks like pairs
    path.write_text("[1, 9, 2, 4]")
    plain = read_class_frequencies(str(path), KEY, num_classes=4)
    assert plain.counts == [1.0, 9.0, 2.0, 4.0] and plain.format == FORMAT_COUNTS_LIST
    # without it, a 2-entry list is two counts (it could be either)
    path.write_text("[1, 9]")
    assert read_class_frequencies(str(path), KEY).counts == [1.0, 9.0]


def test_id_count_list_with_ids_out_of_order_is_refused(tmp_path):
    path = tmp_path / "num_shots_v1.0.json"
    path.write_text(json.dumps([1, 120, 3, 7, 2, 5]))
    with pytest.raises(ValueError) as info:
        read_class_frequencies(str(path), key=KEY, num_classes=3)
    message = str(info.value)
    assert "num_shots_v1.0.json" in message and KEY in message
    assert "looks like the DisAlign authors' [id, count, id, count, ...] list" in message
    assert "ids are not 1..3 in order (entry 2 is 3, expected 2)" in message


def test_authors_v05_numpy_counts(tmp_path):
    path = tmp_path / "num_shots_v0.5.npy"
    np.save(path, np.array([300, 12, 1, 0], dtype=np.int64))
    frequencies = read_class_frequencies(str(path), key=KEY)
    assert frequencies == ([300.0, 12.0, 1.0, 0.0], None)
    assert frequencies.format == FORMAT_NUMPY and frequencies.source == repr(str(path))
    np.save(path, np.array([2.5, 0.5], dtype=np.float32))
    assert read_class_frequencies(str(path)).counts == [2.5, 0.5]
    # the format is the content's, whatever the name says
    named_json = tmp_path / "counts.json"
    named_json.write_bytes(path.read_bytes())
    assert read_class_frequencies(str(named_json)).format == FORMAT_NUMPY


def _npy_bytes(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, content, match",
    [
        # np.save of a dict: a 0-d object array, loadable only by unpickling
        ("dict.npy", _npy_bytes(np.array({"a": 1}), True), r"single pickled Python object"),
        ("objects.npy", _npy_bytes(np.array([1, "a"], dtype=object), True), r"array of Python"),
        ("pairs.npy", _npy_bytes(np.array([[1, 30], [2, 4]])), r"looks like \(id, count\) rows"),
        ("cube.npy", _npy_bytes(np.zeros((2, 3, 4))), r"shape \(2, 3, 4\); expected one dim"),
        ("text.npy", _npy_bytes(np.array(["a", "b"])), r"dtype <U1, not numbers"),
        ("neg.npy", _npy_bytes(np.array([3.0, -1.0])), r"class 1 is -1.0; counts must be"),
        ("nan.npy", _npy_bytes(np.array([3.0, np.nan])), r"class 1 is nan"),
        ("cut_header.npy", _npy_bytes(np.arange(100))[:90], r"truncated or damaged NumPy"),
        ("cut_data.npy", _npy_bytes(np.arange(100))[:-16], r"truncated or damaged NumPy"),
        ("list.npy", b"[1, 2, 3]", r"named .npy but is not a NumPy file.*b'\[1, 2, 3\]'"),
        ("pickled.pkl", pickle.dumps([1, 2, 3]), r"is a Python pickle .*not read"),
        ("arrays.npz", b"PK\x03\x04" + b"\0" * 40, r"zip archive: a NumPy .npz"),
        ("latin1.txt", "caf\xe9 3\n".encode("latin-1"), r"nor UTF-8 text \(byte 3 is b'\\xe9'\)"),
    ],
)
def test_binary_and_numpy_files_that_cannot_be_used(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        read_class_frequencies(str(path), key=KEY)
    message = str(info.value)
    assert name in message and KEY in message
    assert "num_shots_v0.5.npy" in message or "counts must be" in message  # formats listed


def test_object_array_is_never_unpickled(tmp_path, monkeypatch):
    """Refused from its header alone: no pickle.load runs."""
    path = tmp_path / "dict.npy"
    path.write_bytes(_npy_bytes(np.array({"a": 1}), True))

    def no_unpickling(*args, **kwargs):
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    with pytest.raises(ValueError, match="only loads with allow_pickle=True"):
        read_class_frequencies(str(path), key=KEY)


@pytest.mark.parametrize(
    "content, match",
    [
        (
            {"images": [], "annotations": [], "categories": [{"id": 1, "image_count": 3}]},
            r"looks like an LVIS/COCO annotation file",
        ),
        ([{"id": 1, "image_count": 3}], r"looks like detectron2's class_image_count metadata"),
    ],
    ids=["lvis_json", "class_image_count"],
)
def test_json_of_a_known_other_kind_says_what_it_seems_to_be(tmp_path, content, match):
    path = tmp_path / "lvis_v1_train.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match) as info:
        read_class_frequencies(str(path), key=KEY)
    assert "lvis_v1_train.json" in str(info.value) and KEY in str(info.value)


def test_every_format_is_named(tmp_path):
    cases = {
        "a.json": ("[3, 1]", FORMAT_COUNTS_LIST),
        "b.json": ('{"counts": [3, 1]}', FORMAT_COUNTS_OBJECT),
        "c.txt": ("3\n1\n", FORMAT_TEXT),
        "objectInfo150.txt": (OBJECT_INFO, FORMAT_OBJECT_INFO),
        # JSON content in a file not named .json is still JSON
        "d.txt": ("[1, 3, 2, 1]", FORMAT_ID_COUNT_LIST),
    }
    for name, (content, fmt) in cases.items():
        (tmp_path / name).write_text(content)
        assert read_class_frequencies(str(tmp_path / name)).format == fmt, name
    assert read_class_frequencies([1, 2]).format == FORMAT_SEQUENCE
