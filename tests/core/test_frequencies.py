"""Frequency files with bad content: every error names the file, the config key and what is
expected; and re-weighting weights stay finite for every accepted rho."""

import copy
import json
import pickle

import pytest
import torch

from disalign_core import check_class_names, grw_class_weights, read_class_frequencies

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
