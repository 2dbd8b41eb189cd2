"""Training-free calibration of a stage-1 box classifier (MODEL.DISALIGN.POSTHOC) and DisAlign's
prior start (MODEL.DISALIGN.MARGIN_INIT 'prior'), built from real detectron2 configs, the real
class frequencies of the session's generated dataset and detectron2's checkpointer."""

import math
import os

import pytest
import torch
from det_testing import NUM_CLASSES, REPO, TRAIN, VAL, tiny_cfg
from detectron2.data import DatasetCatalog

from disalign_demo.det import add_tiny_backbone_config
from disalign_det import DisAlignCheckpointer, count_class_images, engine
from disalign_det.calibration_stage import disalign_recipe
from disalign_det.engine import Trainer

Q = os.path.join(REPO, "configs", "detectron2", "quick_schedules")
STAGE1_CFG = os.path.join(Q, "mask_rcnn_tiny_instant_test.yaml")
STAGE2_CFG = os.path.join(Q, "disalign_mask_rcnn_tiny_instant_test.yaml")
K = NUM_CLASSES


def opts(*extra):
    return [
        "DATASETS.TRAIN", f"('{TRAIN}',)",
        "DATASETS.TEST", f"('{VAL}',)",
        "MODEL.ROI_HEADS.NUM_CLASSES", str(K),
        "TEST.DETECTIONS_PER_IMAGE", "20",
        *extra,
    ]  # fmt: skip


def centred_log_prior(counts):
    """log pi_j - mean_k log pi_k, written out from the counts."""
    total = sum(counts)
    logs = [math.log(c / total) for c in counts]
    mean = sum(logs) / len(logs)
    return torch.tensor([v - mean for v in logs])


def randomize(model):
    """Non-default stage-1 weights: a steep classifier, so that the prior re-ranks classes."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "calibration" not in name:
                p.add_(0.05 * torch.randn_like(p))


@pytest.fixture(scope="module")
def stage1_checkpoint(synth_dataset, tmp_path_factory):
    """A stage-1 model of the quick-schedule config with random non-default weights, saved by
    detectron2's checkpointer (no training needed: the options act on whatever weights)."""
    torch.manual_seed(0)
    model = Trainer.build_model(tiny_cfg(STAGE1_CFG, opts()))
    randomize(model)
    out = tmp_path_factory.mktemp("stage1")
    DisAlignCheckpointer(model, str(out)).save("model_final")
    return str(out / "model_final.pth")


def stage2_model(checkpoint, *extra):
    """The stage-2 config's model (+ options) with the stage-1 checkpoint loaded as
    ``train_net.py --eval-only`` loads it (engine.main)."""
    cfg = tiny_cfg(STAGE2_CFG, opts("MODEL.WEIGHTS", checkpoint, *extra))
    model = Trainer.build_model(cfg)
    DisAlignCheckpointer(model, calibration_stage=cfg.MODEL.DISALIGN.FREEZE).resume_or_load(
        cfg.MODEL.WEIGHTS, resume=False
    )
    return model.eval()


def predictor_scores(model, x):
    with torch.no_grad():
        return model.roi_heads.box_predictor(x)[0]


def box_features(model, n=16):
    return torch.randn(n, model.roi_heads.box_predictor.cls_score.in_features)


def train_counts():
    return count_class_images(DatasetCatalog.get(TRAIN), K)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_logit_adjustment_against_the_formula(stage1_checkpoint, tau):
    plain = stage2_model(stage1_checkpoint)  # calibration at the identity: stage 1's logits
    la = stage2_model(
        stage1_checkpoint,
        "MODEL.DISALIGN.POSTHOC.TYPE", "logit_adjustment",
        "MODEL.DISALIGN.POSTHOC.TAU", str(tau),
    )  # fmt: skip
    x = box_features(plain)
    z, out = predictor_scores(plain, x), predictor_scores(la, x)
    expected = z[:, :K] - tau * centred_log_prior(train_counts())
    assert torch.allclose(out[:, :K], expected, atol=1e-5)
    assert torch.equal(out[:, K], z[:, K])  # background untouched
    # The prior changes which foreground class wins.
    assert not torch.equal(out[:, :K].argmax(1), z[:, :K].argmax(1))


def test_tau_norm_is_the_row_normalised_classifier(stage1_checkpoint):
    plain = stage2_model(stage1_checkpoint)
    tn = stage2_model(stage1_checkpoint, "MODEL.DISALIGN.POSTHOC.TYPE", "tau_norm")
    x = box_features(plain)
    out = predictor_scores(tn, x)
    cls = plain.roi_heads.box_predictor.cls_score
    w, b = cls.weight[:K], cls.bias[:K]
    normalised = torch.nn.functional.linear(x, w / w.norm(dim=1, keepdim=True), b)
    assert torch.allclose(out[:, :K], normalised, atol=1e-5)
    assert torch.equal(out[:, K], predictor_scores(plain, x)[:, K])
    half = stage2_model(
        stage1_checkpoint,
        "MODEL.DISALIGN.POSTHOC.TYPE", "tau_norm", "MODEL.DISALIGN.POSTHOC.TAU", "0.5",
    )  # fmt: skip
    expected = torch.nn.functional.linear(x, w / w.norm(dim=1, keepdim=True).sqrt(), b)
    assert torch.allclose(predictor_scores(half, x)[:, :K], expected, atol=1e-5)


def test_cosine_classifier_refuses_tau_norm(synth_dataset):
    cfg = tiny_cfg(
        STAGE2_CFG,
        opts("MODEL.DISALIGN.CLASSIFIER", "cosine", "MODEL.DISALIGN.POSTHOC.TYPE", "tau_norm"),
    )
    with pytest.raises(ValueError, match=r"MODEL.DISALIGN.POSTHOC.TYPE 'tau_norm'.*cosine"):
        Trainer.build_model(cfg)
    # logit adjustment is fine on a cosine classifier
    cfg = tiny_cfg(
        STAGE2_CFG,
        opts("MODEL.DISALIGN.CLASSIFIER", "cosine", "MODEL.DISALIGN.POSTHOC.TYPE", "logit_adjustment"),
    )  # fmt: skip
    assert Trainer.build_model(cfg).roi_heads.box_predictor.posthoc.type == "logit_adjustment"


def test_bad_posthoc_type_names_the_key(synth_dataset):
    cfg = tiny_cfg(STAGE2_CFG, opts("MODEL.DISALIGN.POSTHOC.TYPE", "logit_adjust"))
    with pytest.raises(ValueError, match=r"MODEL.DISALIGN.POSTHOC.TYPE.*'logit_adjust'"):
        Trainer.build_model(cfg)
    cfg = tiny_cfg(STAGE2_CFG, opts("MODEL.DISALIGN.POSTHOC.TYPE", "logit_adjustment",
                                    "MODEL.DISALIGN.POSTHOC.TAU", "-1.0"))  # fmt: skip
    with pytest.raises(ValueError, match=r"MODEL.DISALIGN.POSTHOC.TAU"):
        Trainer.build_model(cfg)


def test_training_with_posthoc_is_refused(stage1_checkpoint, tmp_path):
    out = tmp_path / "never_written"
    argv = ["--config-file", STAGE2_CFG, *opts("MODEL.WEIGHTS", stage1_checkpoint,
            "MODEL.DISALIGN.POSTHOC.TYPE", "logit_adjustment", "OUTPUT_DIR", str(out))]  # fmt: skip
    with pytest.raises(ValueError, match=r"MODEL.DISALIGN.POSTHOC.TYPE.*--eval-only"):
        engine.main(engine.argument_parser().parse_args(argv), [add_tiny_backbone_config])
    assert not out.exists()
    # A trainer built without engine.main: the loss refuses.
    model = stage2_model(stage1_checkpoint, "MODEL.DISALIGN.POSTHOC.TYPE", "tau_norm").train()
    predictor = model.roi_heads.box_predictor
    with pytest.raises(ValueError, match=r"MODEL.DISALIGN.POSTHOC.TYPE='tau_norm'.*nothing"):
        predictor.losses(predictor(box_features(model)), [])


def test_eval_only_with_posthoc_runs_the_evaluator(stage1_checkpoint, tmp_path):
    """train_net.py --eval-only, stage-2 config + POSTHOC + MODEL.WEIGHTS <stage-1 model>."""

    def evaluate(*extra):
        argv = ["--eval-only", "--config-file", STAGE2_CFG, *opts(
            "MODEL.WEIGHTS", stage1_checkpoint, "OUTPUT_DIR", str(tmp_path / "eval"),
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", *extra)]  # fmt: skip
        return engine.main(engine.argument_parser().parse_args(argv), [add_tiny_backbone_config])

    res = evaluate("MODEL.DISALIGN.POSTHOC.TYPE", "logit_adjustment")
    assert set(res["bbox"]) >= {"AP", "APr", "APc", "APf"}
    assert all(0.0 <= res["bbox"][k] <= 100.0 for k in ("AP", "APr", "APc", "APf"))


@pytest.mark.parametrize("confidence", ["constant", "none", "input"])
def test_prior_start_is_logit_adjustment(stage1_checkpoint, confidence):
    """At iteration 0 the calibrated logits are the logit-adjusted ones, up to sigma(x) / sigma_0
    for the input-dependent confidence (exactly for "constant" and "none")."""
    conf = ["MODEL.DISALIGN.CONFIDENCE", confidence]
    la = stage2_model(stage1_checkpoint, "MODEL.DISALIGN.POSTHOC.TYPE", "logit_adjustment", *conf)
    prior = stage2_model(stage1_checkpoint, "MODEL.DISALIGN.MARGIN_INIT", "prior", *conf)
    x = box_features(la)
    z_la, z_prior = predictor_scores(la, x), predictor_scores(prior, x)
    calibration = prior.roi_heads.box_predictor.calibration
    sigma0 = 1.0 if confidence == "none" else 0.5
    # beta itself, after the stage-1 checkpoint was loaded: the margin over sigma_0
    margin = -centred_log_prior(train_counts())
    assert torch.allclose(calibration.beta.detach(), margin / sigma0, atol=1e-5)
    assert torch.equal(z_prior[:, K], z_la[:, K])
    if confidence != "input":
        assert torch.allclose(z_prior, z_la, atol=1e-5)
        return
    z = predictor_scores(stage2_model(stage1_checkpoint), x)[:, :K]
    with torch.no_grad():
        sigma = calibration.confidence(x, z)  # (R, 1)
    assert torch.allclose(z_prior[:, :K], z + (sigma / sigma0) * margin, atol=1e-5)
    # sigma(x) is sigmoid(v . x) with v ~ N(0, 0.01^2) at the start: close to sigma_0 = 0.5
    deviation = (z_prior[:, :K] - z_la[:, :K]).abs().mean()
    assert deviation < 0.15 * margin.abs().mean()


def test_prior_start_at_the_first_training_step(stage1_checkpoint, tmp_path):
    """Through the real trainer: the beta the first step trains from is the prior margin."""
    cfg = tiny_cfg(STAGE2_CFG, opts("MODEL.WEIGHTS", stage1_checkpoint, "MODEL.DISALIGN.MARGIN_INIT",
                                    "prior", "MODEL.DISALIGN.PRIOR_TAU", "0.5", "SOLVER.MAX_ITER",
                                    "1", "SOLVER.IMS_PER_BATCH", "2", "DATASETS.TEST", "()",
                                    "OUTPUT_DIR", str(tmp_path)))  # fmt: skip
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    beta = trainer.model.roi_heads.box_predictor.calibration.beta.detach().clone()
    assert torch.allclose(beta, -0.5 * centred_log_prior(train_counts()) / 0.5, atol=1e-5)
    trainer.train()
    after = trainer.model.roi_heads.box_predictor.calibration.beta.detach()
    assert not torch.equal(after, beta)  # it trains from there


def test_margin_init_errors_name_the_keys(synth_dataset):
    with pytest.raises(ValueError, match=r"MODEL.DISALIGN.MARGIN_INIT.*'priors'"):
        Trainer.build_model(tiny_cfg(STAGE2_CFG, opts("MODEL.DISALIGN.MARGIN_INIT", "priors")))
    cfg = tiny_cfg(STAGE1_CFG, opts("MODEL.DISALIGN.MARGIN_INIT", "prior"))
    with pytest.raises(ValueError, match=r"MODEL.DISALIGN.MARGIN_INIT 'prior'.*CALIBRATION True"):
        Trainer.build_model(cfg)


def test_recipe_records_the_options_only_when_set(synth_dataset):
    default = disalign_recipe(tiny_cfg(STAGE2_CFG, opts()))
    assert not any(k.startswith(("MODEL.DISALIGN.MARGIN", "DATASETS.HELDOUT")) and k !=
                   "MODEL.DISALIGN.MARGIN" for k in default)  # fmt: skip
    assert "MODEL.DISALIGN.POSTHOC" not in default and "MODEL.DISALIGN.PRIOR_TAU" not in default
    prior = disalign_recipe(tiny_cfg(STAGE2_CFG, opts("MODEL.DISALIGN.MARGIN_INIT", "prior",
                                                      "DATASETS.HELDOUT.FRACTION", "0.2")))  # fmt: skip
    assert prior["MODEL.DISALIGN.MARGIN_INIT"] == "prior"
    assert prior["DATASETS.HELDOUT.FRACTION"] == 0.2
