import json

import pytest
import torch
import torch.nn.functional as F
from mmseg.models.losses.utils import weight_reduce_loss
from mmseg.registry import MODELS

from disalign_core import grw_class_weights, read_class_frequencies
from disalign_seg import GRWCrossEntropyLoss

OBJECT_INFO = (
    "Idx\tRatio\tTrain\tVal\tName\n"
    "1\t0.1576\t11664\t1172\twall\n"
    "2\t0.1072\t6046\t612\tbuilding;edifice\n"
    "3\t0.0878\t8265\t796\tsky\n"
)


def test_hand_made_2x2_against_torch_weighted_ce():
    counts = [3.0, 1.0]
    loss = MODELS.build(dict(type="GRWCrossEntropyLoss", class_frequencies=counts, rho=1.0))
    # rho=1: w = K * (1/r) / sum(1/r) with r = (0.75, 0.25): w = 2 * (4/3, 4) / (16/3) = (0.5, 1.5)
    assert torch.allclose(loss.class_weight, torch.tensor([0.5, 1.5]))
    logits = torch.tensor([[[[2.0, 0.0], [0.5, -1.0]], [[0.0, 1.0], [0.5, 1.0]]]])  # (1, 2, 2, 2)
    label = torch.tensor([[[0, 1], [1, 255]]])
    got = loss(logits, label, ignore_index=255)
    # by hand: per-pixel CE of the three labelled pixels, weighted, / sum of their weights
    lse = torch.logsumexp(logits, dim=1)[0]
    ce = [lse[0, 0] - 2.0, lse[0, 1] - 1.0, lse[1, 0] - 0.5]
    hand = (0.5 * ce[0] + 1.5 * ce[1] + 1.5 * ce[2]) / (0.5 + 1.5 + 1.5)
    ref = F.cross_entropy(logits, label, weight=torch.tensor([0.5, 1.5]), ignore_index=255)
    assert torch.allclose(got, hand) and torch.allclose(got, ref)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_random_inputs_against_torch(reduction):
    g = torch.Generator().manual_seed(1)
    counts = torch.randint(1, 1000, (7,), generator=g).tolist()
    loss = GRWCrossEntropyLoss(counts, rho=0.3, reduction=reduction, loss_weight=2.0)
    logits = torch.randn(3, 7, 9, 10, generator=g, requires_grad=True)
    label = torch.randint(0, 7, (3, 9, 10), generator=g)
    label[0, :2] = 255
    weight = grw_class_weights(counts, 0.3)
    ref = 2.0 * F.cross_entropy(logits, label, weight=weight, ignore_index=255, reduction=reduction)
    got = loss(logits, label, ignore_index=255)
    assert torch.allclose(got, ref, atol=1e-6)
    # reduction_override follows mmseg's convention
    assert torch.allclose(
        loss(logits, label, ignore_index=255, reduction_override="sum"),
        2.0 * F.cross_entropy(logits, label, weight=weight, ignore_index=255, reduction="sum"),
    )


def test_rho_zero_is_plain_cross_entropy_and_pixel_weights():
    loss = GRWCrossEntropyLoss([5, 1, 1], rho=0.0)
    logits = torch.randn(2, 3, 4, 4)
    label = torch.randint(0, 3, (2, 4, 4))
    assert torch.allclose(loss(logits, label), F.cross_entropy(logits, label))
    # per-pixel weights (mmseg pixel samplers): all ones give the same result
    assert torch.allclose(
        loss(logits, label, weight=torch.ones(2, 4, 4)), F.cross_entropy(logits, label)
    )


def test_all_ignored_gives_zero_with_grad():
    loss = GRWCrossEntropyLoss([2, 1], rho=0.3)
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    out = loss(logits, torch.full((1, 3, 3), 255), ignore_index=255)
    assert out.item() == 0.0
    out.backward()
    assert logits.grad is not None


def test_loss_name_follows_mmseg_convention():
    loss = GRWCrossEntropyLoss([1, 1])
    assert loss.loss_name == "loss_grw_ce"
    assert GRWCrossEntropyLoss([1, 1], loss_name="loss_x").loss_name == "loss_x"
    assert "class_weight" not in loss.state_dict()  # derived data, not a checkpoint entry


def test_frequency_files(tmp_path):
    info = tmp_path / "objectInfo150.txt"
    info.write_text(OBJECT_INFO)
    counts, names = read_class_frequencies(str(info))
    assert counts == [0.1576, 0.1072, 0.0878]
    assert names == ["wall", "building;edifice", "sky"]
    js = tmp_path / "f.json"
    js.write_text(json.dumps({"counts": [10, 5, 1], "names": ["a", "b", "c"]}))
    assert read_class_frequencies(str(js)) == ([10.0, 5.0, 1.0], ["a", "b", "c"])
    txt = tmp_path / "f.txt"
    txt.write_text("10\n5\n1\n")
    loss = GRWCrossEntropyLoss(str(txt), rho=0.3)
    assert torch.allclose(loss.class_weight, grw_class_weights([10, 5, 1], 0.3))
    assert torch.allclose(
        GRWCrossEntropyLoss(str(info)).class_weight,
        grw_class_weights([0.1576, 0.1072, 0.0878], 0.3),
    )


def test_bad_object_info_line_is_named(tmp_path):
    info = tmp_path / "objectInfo150.txt"
    info.write_text(OBJECT_INFO + "4\tlots\t1\t1\tfloor\n")
    with pytest.raises(ValueError, match=r"objectInfo150.txt:5: Ratio 'lots'"):
        read_class_frequencies(str(info))


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        GRWCrossEntropyLoss(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match=r"rho \(model.decode_head.loss_decode.rho\) must be >= 0"):
        GRWCrossEntropyLoss([1, 2], rho=-0.3)
    with pytest.raises(ValueError, match="no training examples.*c1"):
        GRWCrossEntropyLoss(str(_named(tmp_path, [4, 0, 1])))
    with pytest.warns(UserWarning, match="no training examples"):
        GRWCrossEntropyLoss([4, 0, 1], zero_count="warn")
    with pytest.raises(ValueError, match="3 entries but the model has 5 classes"):
        GRWCrossEntropyLoss([1, 2, 3], num_classes=5)
    loss = GRWCrossEntropyLoss([1, 2, 3])
    with pytest.raises(ValueError, match="frequencies for 3 classes.*4 classes"):
        loss(torch.randn(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction"):
        GRWCrossEntropyLoss([1, 2], reduction="avg")


def _named(tmp_path, counts):
    path = tmp_path / "named.txt"
    path.write_text("".join(f"c{i}\t{c}\n" for i, c in enumerate(counts)))
    return path


def test_default_rho_is_the_papers_0_3_by_hand():
    loss = MODELS.build(dict(type="GRWCrossEntropyLoss", class_frequencies=[3.0, 1.0]))
    a, b = (1 / 0.75) ** 0.3, (1 / 0.25) ** 0.3  # (1 / r_c)^rho with r = (0.75, 0.25)
    assert torch.allclose(loss.class_weight, torch.tensor([2 * a / (a + b), 2 * b / (a + b)]))


@pytest.mark.parametrize("avg_mode", ["all", "labelled"])
def test_pixel_means_match_the_authors_mmseg_reduction(avg_mode):
    # The authors' reduction (mmseg 0.x cross_entropy): per-pixel weighted CE, then mmseg's
    # weight_reduce_loss, i.e. the mean over all pixels of the batch, unlabelled ones included.
    g = torch.Generator().manual_seed(2)
    counts = torch.randint(1, 1000, (6,), generator=g).tolist()
    loss = MODELS.build(
        dict(type="GRWCrossEntropyLoss", class_frequencies=counts, avg_mode=avg_mode)
    )
    logits = torch.randn(2, 6, 8, 8, generator=g)
    label = torch.randint(0, 6, (2, 8, 8), generator=g)
    label[0, :3] = 255
    w = grw_class_weights(counts, 0.3)
    per_pixel = F.cross_entropy(logits, label, weight=w, ignore_index=255, reduction="none")
    labelled = int((label != 255).sum())
    ref = weight_reduce_loss(
        per_pixel, reduction="mean", avg_factor=None if avg_mode == "all" else labelled
    )
    assert torch.allclose(loss(logits, label, ignore_index=255), ref, atol=1e-6)
    # The default (torch's weighted mean) is another number on this input.
    default = GRWCrossEntropyLoss(counts)(logits, label, ignore_index=255)
    assert torch.allclose(default, F.cross_entropy(logits, label, weight=w, ignore_index=255))
    assert not torch.allclose(default, ref)
    assert f"avg_mode='{avg_mode}'" in repr(loss)
