"""MEC adapters in MMDetection: losses, heads built from real recipes, seeded forward/loss, predict in every mode."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.structures import InstanceData

import mec_cli.models  # noqa: F401
from mec_cli.models.roi_heads import all_modes, parse_mode
from mec_cli.ops import multi_expert_loss
from mec_cli.recipes import load_config, resolve_recipe

register_all_modules()
GROUPS = [2] * 9 + [1] * 10 + [0] * 5  # 24 synthetic classes, frequent first


def _tiny_cfg(name="tiny"):
    cfg = load_config(resolve_recipe(name).file)
    if "mec" in cfg.model.roi_head:
        cfg.model.roi_head.mec.class_groups = GROUPS
    return cfg


def _inputs(num_images=2, size=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(num_images):
        ds = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
                                         scale_factor=(1.0, 1.0), batch_input_shape=(size, size), img_id=i))
        n = 3
        xy = torch.rand(n, 2, generator=g) * (size - 40)
        wh = 12 + torch.rand(n, 2, generator=g) * 25
        gt = InstanceData(bboxes=torch.cat([xy, xy + wh], 1), labels=torch.randint(0, 24, (n,), generator=g))
        from mmdet.structures.mask import BitmapMasks

        masks = torch.zeros(n, size, size, dtype=torch.uint8)
        for k in range(n):
            x0, y0, x1, y1 = gt.bboxes[k].int().tolist()
            masks[k, y0:y1, x0:x1] = 1
        gt.masks = BitmapMasks(masks.numpy(), size, size)
        ds.gt_instances = gt
        samples.append(ds)
    return torch.rand(num_images, 3, size, size, generator=g) * 255, samples


def test_mec_loss_class_matches_functional_and_weights():
    loss = MODELS.build(dict(type="MECMultiExpertLoss", expert_group=1, class_groups=[0, 1, 1, 2], lam=0.7))
    score = torch.randn(8, 5)
    label = torch.tensor([0, 1, 2, 3, 4, 1, 2, 4])
    ref = multi_expert_loss(score, label, torch.tensor([0, 1, 1, 2]), 1, 0.7)
    torch.testing.assert_close(loss(score, label), ref)
    w = torch.tensor([1.0, 0, 1, 1, 1, 0, 1, 1])
    per = multi_expert_loss(score, label, torch.tensor([0, 1, 1, 2]), 1, 0.7, reduction="none")
    torch.testing.assert_close(loss(score, label, w, avg_factor=6), (per * w).sum() / 6)
    with pytest.raises(ValueError, match="class_groups"):
        MODELS.build(dict(type="MECMultiExpertLoss", expert_group=0))


def test_head_injects_expert_loss_per_stage_and_checks_groups():
    cfg = _tiny_cfg()
    model = MODELS.build(cfg.model)
    for k, head in enumerate(model.roi_head.bbox_head):
        assert type(head.loss_cls).__name__ == "MECMultiExpertLoss"
        assert head.loss_cls.expert_group == k and head.loss_cls.lam == 0.7
        assert head.loss_cls.class_groups.tolist() == GROUPS
    bad = copy.deepcopy(cfg.model)
    bad.roi_head.mec.class_groups = [0, 1] * 12  # 2 groups for 3 stages
    with pytest.raises(ValueError, match="one group per stage"):
        MODELS.build(bad)
    none = copy.deepcopy(cfg.model)
    none.roi_head.mec.class_groups = None
    with pytest.raises(ValueError, match="class_groups"):
        MODELS.build(none)


def test_seeded_forward_loss_is_finite_and_reproducible_and_differs_from_baseline():
    torch.manual_seed(0)
    mec = MODELS.build(_tiny_cfg().model)
    torch.manual_seed(0)
    base = MODELS.build(_tiny_cfg("tiny_baseline").model)
    base.load_state_dict(mec.state_dict())  # the same weights: MEC adds no parameters
    imgs, samples = _inputs()
    out = []
    for model in (mec, base, mec):
        model.train()
        torch.manual_seed(1)
        data = model.data_preprocessor({"inputs": list(imgs), "data_samples": copy.deepcopy(samples)}, training=True)
        losses = model.loss(data["inputs"], data["data_samples"])
        out.append({k: float(v) if not isinstance(v, list) else float(sum(v)) for k,
                    v in losses.items() if "loss" in k})
    assert all(torch.isfinite(torch.tensor(list(o.values()))).all() for o in out)
    assert out[0] == pytest.approx(out[2], rel=1e-6)  # seeded: same numbers twice
    # The multi-expert loss lowers the class loss of in-group labels, so the totals differ from CE.
    assert out[0]["s0.loss_cls"] != pytest.approx(out[1]["s0.loss_cls"], rel=1e-6)
    assert out[0]["s0.loss_bbox"] == pytest.approx(out[1]["s0.loss_bbox"], rel=1e-6)


@pytest.mark.parametrize("recipe", ["tiny"])
def test_predict_every_mode_from_one_forward(recipe):
    cfg = _tiny_cfg(recipe)
    cfg.model.test_cfg.rcnn.modes = all_modes(3)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    imgs, samples = _inputs()
    data = model.data_preprocessor({"inputs": list(imgs), "data_samples": samples}, training=False)
    calls = {"n": 0}
    real = model.backbone.forward

    def counting(x):
        calls["n"] += 1
        return real(x)

    model.backbone.forward = counting
    with torch.no_grad():
        preds = model.predict(data["inputs"], data["data_samples"])
    assert calls["n"] == 1  # one backbone pass for all eleven modes
    for ds in preds:
        assert list(ds.mec_modes) == ["dynamic_ga"] + [m for m in all_modes(3) if m != "dynamic_ga"]
        assert len(ds.mec_modes) == 11
        for name, inst in ds.mec_modes.items():
            assert inst.bboxes.shape[1] == 4 and len(inst.scores) == len(inst.labels) == len(inst.masks)
            assert (inst.scores >= 1e-4).all() and (inst.scores <= 1).all()
        torch.testing.assert_close(ds.pred_instances.scores, ds.mec_modes["dynamic_ga"].scores)
    # different modes score differently
    a, b = preds[0].mec_modes["stage1"].scores, preds[0].mec_modes["stage3"].scores
    assert a.shape != b.shape or not torch.allclose(a, b)


def test_baseline_weights_in_a_mec_head_score_with_one_stage():
    cfg = _tiny_cfg("tiny_baseline")
    cfg.model.roi_head.type = "MECCascadeRoIHead"
    cfg.model.roi_head.mec = dict(class_groups=GROUPS, loss=False)
    cfg.model.test_cfg.rcnn.update(stage=2, score_thr=0.0, max_per_img=1000, nms=dict(type="nms", iou_threshold=1.01))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    assert type(model.roi_head.bbox_head[0].loss_cls).__name__ == "CrossEntropyLoss"  # loss=False keeps CE
    imgs, samples = _inputs(1)
    data = model.data_preprocessor({"inputs": list(imgs), "data_samples": samples}, training=False)
    with torch.no_grad():
        pred = model.predict(data["inputs"], data["data_samples"])[0]
    assert list(pred.mec_modes) == ["stage2"] and len(pred.pred_instances) > 0


def test_mode_names_round_trip():
    assert parse_mode("stage3") == ("stage", False, 2)
    assert parse_mode("sparse_ga") == ("sparse", True, None)
    assert len(all_modes(3)) == 11 and len(set(all_modes(4))) == 12
    with pytest.raises(ValueError):
        parse_mode("best")


def test_cosine_classifier_and_seesaw_and_four_stages_build_and_train_step():
    for name, groups in (("cascade_r50_cos", [0, 1, 2]), ("cascade_r50_seesaw", [0, 1, 2]),
                         ("cascade_r50_4stage", [0, 1, 2, 3])):
        cfg = load_config(resolve_recipe(name).file)
        from mec_cli.recipes import set_num_classes

        set_num_classes(cfg, 6)
        cfg.model.backbone.update(depth=18, init_cfg=None)
        cfg.model.neck.in_channels = [64, 128, 256, 512]
        cfg.model.roi_head.mec.class_groups = [groups[i % len(groups)] for i in range(6)]
        model = MODELS.build(cfg.model)
        kinds = {type(h.loss_cls).__name__ for h in model.roi_head.bbox_head}
        assert kinds == ({"MECSeesawLoss"} if "seesaw" in name else {"MECMultiExpertLoss"})
        assert len(model.roi_head.bbox_head) == len(groups)
        if "cos" in name:
            assert type(model.roi_head.bbox_head[0].fc_cls).__name__ == "NormedLinear"
        imgs, samples = _inputs(1, 96)
        for s in samples:
            s.gt_instances.labels %= 6
        model.train()
        data = model.data_preprocessor({"inputs": list(imgs), "data_samples": samples}, training=True)
        losses = model.loss(data["inputs"], data["data_samples"])
        total = sum(v for k, v in losses.items() if "loss" in k and not isinstance(v, list))
        total.backward()
        assert torch.isfinite(total)


def test_htc_mec_head_trains_and_predicts_every_mode():
    from mec_cli.recipes import set_num_classes

    cfg = load_config(resolve_recipe("htc_r50").file)
    set_num_classes(cfg, 6)
    cfg.model.backbone.update(depth=18, init_cfg=None)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    cfg.model.roi_head.mec.class_groups = [0, 0, 1, 1, 2, 2]
    cfg.model.test_cfg.rcnn.modes = all_modes(3)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    assert type(model.roi_head).__name__ == "MECHTCRoIHead"
    imgs, samples = _inputs(1, 96)
    for s in samples:
        s.gt_instances.labels %= 6
    data = model.data_preprocessor({"inputs": list(imgs), "data_samples": copy.deepcopy(samples)}, training=True)
    losses = model.loss(data["inputs"], data["data_samples"])
    assert torch.isfinite(sum(v for k, v in losses.items() if "loss" in k and not isinstance(v, list)))
    model.eval()
    data = model.data_preprocessor({"inputs": list(imgs), "data_samples": samples}, training=False)
    with torch.no_grad():
        pred = model.predict(data["inputs"], data["data_samples"])[0]
    assert len(pred.mec_modes) == 11 and all("masks" in inst for inst in pred.mec_modes.values())


@pytest.mark.parametrize("recipe", ["tiny_baseline", "tiny_baseline:class_specific", "htc_r50_baseline",
                                    "cascade_r50_seesaw_baseline", "cascade_r50_cos_baseline"])
def test_mean_logits_mode_equals_mmdetection_own_head(recipe):
    """Same weights, mean_logits: the MEC head (with all 11 modes requested) reproduces mmdet's predictions exactly.

    Covers a custom activation (seesaw: MMDetection averages the raw C+2 scores, then applies seesaw's activation),
    the cosine classifier, HTC's mask information flow and class-specific box regression (each mask from the box of
    the detection's own class).
    """
    from mec_cli.recipes import set_num_classes

    recipe, _, variant = recipe.partition(":")
    cfg = load_config(resolve_recipe(recipe).file)
    if not recipe.startswith("tiny"):
        set_num_classes(cfg, 6)
        cfg.model.backbone.update(depth=18, init_cfg=None)
        cfg.model.neck.in_channels = [64, 128, 256, 512]
    if variant == "class_specific":
        for head in cfg.model.roi_head.bbox_head:
            head["reg_class_agnostic"] = False
    n = cfg.model.roi_head.bbox_head[0]["num_classes"]
    torch.manual_seed(0)
    plain = MODELS.build(cfg.model).eval()
    if "seesaw" in recipe:
        assert plain.roi_head.bbox_head[0].custom_activation
    mec_cfg = copy.deepcopy(cfg.model)
    mec_cfg.roi_head.type = "MECHTCRoIHead" if recipe.startswith("htc") else "MECCascadeRoIHead"
    mec_cfg.roi_head.mec = dict(class_groups=[i % 3 for i in range(n)], loss=False)
    mec_cfg.test_cfg.rcnn.modes = all_modes(3)
    mec = MODELS.build(mec_cfg).eval()
    mec.load_state_dict(plain.state_dict())
    imgs, samples = _inputs(2, 96)
    outs = []
    for model in (plain, mec):
        data = model.data_preprocessor({"inputs": list(imgs), "data_samples": copy.deepcopy(samples)}, training=False)
        with torch.no_grad():
            outs.append(model.predict(data["inputs"], data["data_samples"]))
    for a, b in zip(*outs):
        pa, pb = a.pred_instances, b.pred_instances
        assert len(pa) > 0
        torch.testing.assert_close(pb.bboxes, pa.bboxes)
        torch.testing.assert_close(pb.scores, pa.scores)
        assert torch.equal(pb.labels, pa.labels) and torch.equal(pb.masks, pa.masks)
        assert torch.equal(b.mec_modes["mean_logits"].masks, pa.masks)
