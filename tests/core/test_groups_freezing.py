import pytest
import torch
from torch import nn

from disalign_core import (
    CLASSIFICATION_COUNT_BINS,
    DisAlignCalibration,
    freeze_all_but_calibration,
    group_indices,
    groups_by_count,
    groups_by_share,
    is_eval_locked,
    read_class_frequencies,
    write_class_frequencies,
)
from disalign_core.freezing import freeze_except, is_frozen


def test_lvis_count_groups_boundaries():
    assert groups_by_count([1, 10, 11, 100, 101]) == [
        "rare",
        "rare",
        "common",
        "common",
        "frequent",
    ]


def test_classification_count_groups_boundaries():
    bounds, names = CLASSIFICATION_COUNT_BINS
    assert groups_by_count([19, 20, 100, 101], bounds, names) == ["few", "medium", "medium", "many"]


def test_share_groups_ade20k_thresholds():
    # shares: 0.9, 0.0905 (>1%), 0.005 (body), 0.001 (body, boundary), 0.0005 (tail)
    counts = [9000, 905, 50, 10, 5]
    g = groups_by_share(counts)
    assert g[:2] == ["head", "head"]
    assert g[2] == "body"
    assert g[4] == "tail"
    # shares of a given total (ADE20K's ratios are shares of all pixels, unlabelled included)
    assert groups_by_share([0.0098, 0.0011, 0.001], total=1.0) == ["body", "body", "tail"]
    assert groups_by_share([0.0098, 0.0011, 0.001])[0] == "head"  # 0.0098 / 0.0119 > 1%
    idx = group_indices(g, ["head", "body", "tail"])
    assert idx["head"] == [0, 1] and idx["tail"] == [4]


def test_groups_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        groups_by_count([1, -1])
    with pytest.raises(ValueError, match="one more name"):
        groups_by_share([1, 2], (0.1,), ("a", "b", "c"))


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5))
        self.cls = nn.Conv2d(4, 3, 1)
        self.calibration = DisAlignCalibration(3, 4)

    def forward(self, x):
        f = self.body(x)
        return self.calibration(self.cls(f), f)


def test_freeze_trains_only_calibration_and_keeps_bn_statistics():
    torch.manual_seed(0)
    net = TinyNet()
    net.train()
    net(torch.randn(2, 3, 8, 8))  # move BN statistics away from their init
    frozen_before = {k: v.clone() for k, v in net.state_dict().items() if "calibration" not in k}

    trainable = freeze_all_but_calibration(net)
    assert set(trainable) == {
        "calibration.alpha",
        "calibration.beta",
        "calibration.confidence_weight",
        "calibration.confidence_bias",
    }
    net.train()  # trainers call this; frozen parts must stay in eval
    assert not net.body.training and not net.cls.training and net.calibration.training
    assert is_eval_locked(net.body) and not is_eval_locked(net.calibration)

    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(
            net(torch.randn(2, 3, 8, 8)), torch.randint(0, 3, (2, 6, 6))
        )
        loss.backward()
        for name, p in net.named_parameters():
            assert (p.grad is not None) == name.startswith("calibration."), name
        opt.step()
    after = net.state_dict()
    for k, v in frozen_before.items():
        assert torch.equal(after[k], v), f"{k} changed during calibration"
    assert not torch.equal(after["calibration.alpha"], torch.zeros(3))


def test_norm_lock_keeps_only_norm_and_dropout_in_eval():
    net = TinyNet()
    trainable = freeze_all_but_calibration(net, lock="norm")
    assert trainable and all(n.startswith("calibration.") for n in trainable)
    net.train()
    # the frozen modules follow train(); only their mode-dependent layers are held in eval
    assert net.body.training and net.cls.training and net.body[0].training
    assert not net.body[1].training and not net.body[3].training  # BatchNorm, Dropout
    assert is_frozen(net.body) and not is_frozen(net.calibration) and not is_frozen(net)
    assert not is_eval_locked(net.body)
    net.eval()
    assert not net.body.training and not net.calibration.training
    net.train()
    assert net.calibration.training and not net.body[1].training

    x = torch.randn(2, 3, 8, 8)
    before = net.body[1].running_mean.clone()
    out1, out2 = net(x), net(x)
    assert torch.equal(out1, out2)  # dropout off
    assert torch.equal(net.body[1].running_mean, before)  # statistics fixed


@pytest.mark.parametrize("lock", ["module", "norm"])
def test_lock_survives_replaced_norm_layers(lock):
    """mmengine's revert_sync_batchnorm replaces (Sync)BN modules after the model is built."""
    net = TinyNet()
    freeze_all_but_calibration(net, lock=lock)
    replacement = nn.BatchNorm2d(4)
    replacement.load_state_dict(net.body[1].state_dict())
    replacement.requires_grad_(False)
    net.body[1] = replacement
    net.train()
    assert not replacement.training
    before = replacement.running_mean.clone()
    net(torch.randn(2, 3, 8, 8))
    assert torch.equal(replacement.running_mean, before)


def test_parameter_free_layer_of_a_kept_module_is_not_locked():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(nn.Conv2d(4, 4, 1), nn.Dropout(0.5)))
    freeze_except(net, lambda name, _: name == "1", lock="norm")
    net.train()
    assert net[1][1].training  # the dropout belongs to the kept module: it trains with it
    with pytest.raises(ValueError, match="lock must be one of.*'bogus'"):
        freeze_except(net, lambda name, _: False, lock="bogus")


def test_freeze_without_calibration_is_an_error():
    with pytest.raises(ValueError, match="no DisAlign calibration parameters"):
        freeze_all_but_calibration(nn.Linear(2, 2))


def test_frequency_files_round_trip(tmp_path):
    for name in ["f.txt", "f.json"]:
        p = str(tmp_path / name)
        write_class_frequencies(p, [3.0, 1.0], ["a b", "c"])
        assert read_class_frequencies(p) == ([3.0, 1.0], ["a b", "c"])
    plain = tmp_path / "plain.txt"
    plain.write_text("# counts\n5\n7\n")
    assert read_class_frequencies(str(plain)) == ([5.0, 7.0], None)
    bad = tmp_path / "bad.txt"
    bad.write_text("dog many\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        read_class_frequencies(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_class_frequencies(str(tmp_path / "missing.txt"))
