"""Frequency files with bad content: every error names the file, the config key and what is
expected; and re-weighting weights stay finite for every accepted rho."""

import json

import pytest
import torch

from disalign_core import grw_class_weights, read_class_frequencies

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
