"""Golden losses of the tiny MEC RoI head under a fixed seed, as detectron2's RoI-head tests keep them.

The head is built alone from the ``tiny`` recipe and fed fixed feature maps, proposals and ground truth,
so a silent change of the multi-expert loss, the stage wiring or mmdet's sampling shows up here at once.
"""
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmdet.utils import register_all_modules
from mmengine.structures import InstanceData

import mec_cli.models  # noqa: F401
from mec_cli.ops import multi_expert_loss
from mec_cli.recipes import load_config, resolve_recipe

register_all_modules()
GROUPS = [2] * 9 + [1] * 10 + [0] * 5  # 24 synthetic classes, frequent first
SIZE = 64

# Recorded from the head as it stood before the launch/defaults refactor (issue 15); CPU, float32.
GOLDEN = {
    "s0.loss_cls": 3.173438787460327, "s0.loss_bbox": 0.06995350122451782, "s0.loss_mask": 0.7154180407524109,
    "s1.loss_cls": 1.6200947761535645, "s1.loss_bbox": 0.05216826871037483, "s1.loss_mask": 0.3493366539478302,
    "s2.loss_cls": 0.8063837289810181, "s2.loss_bbox": 0.00012712446914520115, "s2.loss_mask": 0.1807287633419037,
}


def _tiny_head():
    cfg = load_config(resolve_recipe("tiny").file)
    cfg.model.roi_head.mec.class_groups = GROUPS
    torch.manual_seed(0)
    head = MODELS.build(dict(cfg.model.roi_head, train_cfg=cfg.model.train_cfg.rcnn, test_cfg=cfg.model.test_cfg.rcnn))
    return head.train()


def _fixed_inputs():
    """FPN features (4 levels, 64 channels) of two 64x64 images, 40 proposals and 3 boxes with masks per image."""
    g = torch.Generator().manual_seed(0)
    x = tuple(torch.randn(2, 64, SIZE // s, SIZE // s, generator=g) for s in (4, 8, 16, 32))
    samples, proposals = [], []
    for _ in range(2):
        ds = DetDataSample(metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE),
                                         scale_factor=(1.0, 1.0), batch_input_shape=(SIZE, SIZE)))
        xy = torch.rand(3, 2, generator=g) * (SIZE - 24)
        wh = 8 + torch.rand(3, 2, generator=g) * 16
        gt = InstanceData(bboxes=torch.cat([xy, xy + wh], 1), labels=torch.tensor([0, 12, 21]))  # one per group
        masks = torch.zeros(3, SIZE, SIZE, dtype=torch.uint8)
        for k in range(3):
            x0, y0, x1, y1 = gt.bboxes[k].int().tolist()
            masks[k, y0:y1, x0:x1] = 1
        gt.masks = BitmapMasks(masks.numpy(), SIZE, SIZE)
        ds.gt_instances = gt
        samples.append(ds)
        pxy = torch.rand(40, 2, generator=g) * (SIZE - 24)
        pwh = 6 + torch.rand(40, 2, generator=g) * 20
        proposals.append(InstanceData(bboxes=torch.cat([pxy, pxy + pwh], 1), scores=torch.rand(40, generator=g)))
    return x, proposals, samples


def test_tiny_mec_head_losses_match_the_golden_values():
    head = _tiny_head()
    x, proposals, samples = _fixed_inputs()
    torch.manual_seed(1)  # mmdet's RandomSampler draws from torch's global generator
    losses = head.loss(x, proposals, samples)
    got = {k: float(v.detach()) for k, v in losses.items() if "loss" in k}
    assert got == pytest.approx(GOLDEN, rel=1e-4, abs=1e-6)


def test_stage_k_classification_loss_is_the_multi_expert_loss_of_group_k():
    """The head wires stage k to expert group k: its loss_cls equals multi_expert_loss(..., expert_group=k) on the
    same logits, labels and weights (mmdet averages over the labelled RoIs, then scales by the stage's weight)."""
    head = _tiny_head()
    x, proposals, samples = _fixed_inputs()
    seen = {}
    for k, bbox_head in enumerate(head.bbox_head):
        def spy(cls_score, bbox_pred, rois, labels, label_weights, *rest, _k=k, _real=bbox_head.loss, **kw):
            seen[_k] = (cls_score.detach(), labels, label_weights)
            return _real(cls_score, bbox_pred, rois, labels, label_weights, *rest, **kw)

        bbox_head.loss = spy
    torch.manual_seed(1)
    losses = head.loss(x, proposals, samples)
    assert sorted(seen) == list(range(head.num_stages))
    groups = torch.tensor(GROUPS)
    for k, (cls_score, labels, weights) in seen.items():
        per_roi = multi_expert_loss(cls_score, labels, groups, expert_group=k, lam=0.7, reduction="none")
        avg_factor = max(float((weights > 0).sum()), 1.0)
        expected = head.stage_loss_weights[k] * (per_roi * weights).sum() / avg_factor
        torch.testing.assert_close(losses[f"s{k}.loss_cls"].detach(), expected)
        other = multi_expert_loss(cls_score, labels, groups, expert_group=(k + 1) % 3, lam=0.7, reduction="none")
        assert not torch.allclose(head.stage_loss_weights[k] * (other * weights).sum() / avg_factor, expected)
