"""MEC RoI heads for Cascade (Mask) R-CNN and HTC: expert losses in training, stage ensembles in test.

Training: with ``mec.loss=True`` the head rewrites the ``loss_cls`` of stage k into the multi-expert
loss of group k (``MECMultiExpertLoss``; ``MECSeesawLoss`` when the stage used seesaw loss), so a
recipe only states ``mec=dict(class_groups=..., lam=0.7)`` and inherits every other setting.

Test: ``test_cfg.rcnn`` chooses how the stages' class scores are combined:

* ``ensemble``: ``mean_logits`` (MMDetection's default), ``mean_probs`` (the paper's Cascade
  baseline), ``sparse`` or ``dynamic``;
* ``group_align``: apply group alignment first; ``tau``: the dynamic ensemble's temperature;
* ``stage``: 1-based stage index to score with that stage alone instead of an ensemble;
* ``modes``: optional list of extra mode names evaluated from the same forward pass (see
  :func:`parse_mode`); their results are attached to each data sample as ``mec_modes``.

Boxes always come from the last stage's regression, as in MMDetection. The backbone, RPN and every
stage run once; each mode costs only its own NMS, and the mask heads run once over the union of
the modes' (RoI, class) detections.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.layers import multiclass_nms
from mmdet.models.roi_heads import CascadeRoIHead, HybridTaskCascadeRoIHead
from mmdet.models.utils import empty_instances
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi, get_box_tensor, scale_boxes
from mmengine.structures import InstanceData
from torch import Tensor

from mec_cli.ops import ENSEMBLES, stage_scores

ModeSpec = Tuple[str, bool, Optional[int]]  # (ensemble or 'stage', group_align, 0-based stage)


def parse_mode(name: str) -> ModeSpec:
    """'stage2' -> ('stage', False, 1); 'dynamic_ga' -> ('dynamic', True, None); 'mean_probs' -> ('mean_probs', False, None)."""
    if name.startswith("stage") and name[5:].isdigit():
        return "stage", False, int(name[5:]) - 1
    align = name.endswith("_ga")
    base = name[:-3] if align else name
    if base not in ENSEMBLES:
        raise ValueError(f"unknown scoring mode {name!r}: use stageN or one of {', '.join(ENSEMBLES)} with optional _ga")
    return base, align, None


def mode_name(ensemble: str, group_align: bool = False, stage: Optional[int] = None) -> str:
    """Inverse of :func:`parse_mode` (``stage`` is 1-based here, as in test_cfg)."""
    if stage is not None:
        return f"stage{int(stage)}"
    return f"{ensemble}_ga" if group_align else ensemble


def all_modes(num_stages: int) -> List[str]:
    """Every stage alone plus every ensemble with and without group alignment (3 + 8 = 11 for 3 stages)."""
    return [f"stage{k + 1}" for k in range(num_stages)] + [m for e in ENSEMBLES for m in (e, f"{e}_ga")]


class MECHeadMixin:
    """What Cascade and HTC MEC heads share; mixed in before the mmdet head class."""

    def __init__(self, num_stages: int, stage_loss_weights, bbox_head=None, mec: Optional[dict] = None, **kwargs):
        bbox_head = self._setup_mec(mec, num_stages, bbox_head)
        super().__init__(num_stages=num_stages, stage_loss_weights=stage_loss_weights, bbox_head=bbox_head, **kwargs)
        self.register_groups((mec or {}).get("class_groups"))

    def _setup_mec(self, mec: Optional[dict], num_stages: int, bbox_head) -> Optional[List]:
        """Store MEC settings and return ``bbox_head`` configs with expert losses injected."""
        mec = dict(mec or {})
        groups = mec.get("class_groups")
        self.mec_lam = float(mec.get("lam", 0.7))
        self.mec_loss = bool(mec.get("loss", True))
        if groups is not None:
            num_groups = max(groups) + 1
            if self.mec_loss and num_groups != num_stages:
                raise ValueError(f"MEC needs one group per stage: {num_stages} stages but class_groups has {num_groups} groups")
        elif self.mec_loss:
            raise ValueError("MEC heads need mec.class_groups (one group index per class); pass --groups to `mec train` "
                             "or let it compute them from the training annotations")
        if not self.mec_loss or bbox_head is None:
            return bbox_head
        heads = copy.deepcopy(bbox_head if isinstance(bbox_head, (list, tuple)) else [bbox_head] * num_stages)
        for k, head in enumerate(heads):
            loss = dict(head.get("loss_cls", dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)))
            kind = loss.pop("type")
            if kind in ("SeesawLoss", "MECSeesawLoss"):
                loss.update(type="MECSeesawLoss")
            elif kind in ("CrossEntropyLoss", "MECMultiExpertLoss") and not loss.get("use_sigmoid", False):
                loss = dict(type="MECMultiExpertLoss", loss_weight=loss.get("loss_weight", 1.0))
            else:
                raise ValueError(f"MEC cannot wrap loss_cls of type {kind}; use softmax CrossEntropyLoss or SeesawLoss")
            loss.update(expert_group=k, class_groups=list(groups), lam=self.mec_lam)
            head["loss_cls"] = loss
        return heads

    def register_groups(self, class_groups: Optional[Sequence[int]]) -> None:
        groups = None if class_groups is None else torch.as_tensor(list(class_groups), dtype=torch.long)
        self.register_buffer("mec_class_groups", groups, persistent=False)

    # ---- test time -------------------------------------------------------------------------
    def _requested_modes(self, cfg) -> Tuple[str, List[str]]:
        primary = mode_name(cfg.get("ensemble", "mean_logits"), bool(cfg.get("group_align", False)), cfg.get("stage"))
        extra = [m for m in (cfg.get("modes") or []) if m != primary]
        for m in [primary, *extra]:
            kind, align, stage = parse_mode(m)
            if stage is not None and not 0 <= stage < self.num_stages:
                raise ValueError(f"mode {m}: this model has {self.num_stages} stages")
            if (align or kind in ("sparse", "dynamic")) and self.mec_class_groups is None:
                raise ValueError(f"mode {m} needs class groups: set model.roi_head.mec.class_groups")
        return primary, extra

    def _stage_logits(self, stage: int, cls_score: Tensor) -> Tensor:
        """Per-stage (R, C+1) logits for the MEC math; heads with a custom activation give log-probabilities."""
        head = self.bbox_head[stage]
        if head.custom_activation:
            return head.loss_cls.get_activation(cls_score).clamp(min=1e-12).log()
        return cls_score

    def _decode(self, roi: Tensor, bbox_pred: Tensor, img_meta: dict, rescale: bool) -> Tensor:
        """Last-stage boxes (R, 4) of one image, decoded and optionally rescaled, as BBoxHead does."""
        head = self.bbox_head[-1]
        img_shape = img_meta["img_shape"]
        num_cls = 1 if head.reg_class_agnostic else head.num_classes
        if bbox_pred is not None:
            rois = roi.repeat_interleave(num_cls, dim=0)
            bboxes = head.bbox_coder.decode(rois[..., 1:], bbox_pred.view(-1, head.bbox_coder.encode_size), max_shape=img_shape)
        else:
            bboxes = roi[:, 1:].clone()
            bboxes[:, [0, 2]].clamp_(min=0, max=img_shape[1])
            bboxes[:, [1, 3]].clamp_(min=0, max=img_shape[0])
        if rescale and bboxes.size(0) > 0:
            bboxes = scale_boxes(bboxes, [1 / s for s in img_meta["scale_factor"]])
        bboxes = get_box_tensor(bboxes)
        return bboxes.view(roi.size(0), -1)

    def predict_bbox(self, x: Tuple[Tensor], batch_img_metas: List[dict], rpn_results_list, rcnn_test_cfg,
                     rescale: bool = False, **kwargs):
        """Primary mode's results; the extra modes' go to ``self._mec_extra``. Each result keeps ``roi_inds``."""
        primary, extra = self._requested_modes(rcnn_test_cfg)
        proposals = [res.bboxes for res in rpn_results_list]
        num_per_img = tuple(len(p) for p in proposals)
        rois = bbox2roi(proposals)
        if rois.shape[0] == 0:
            def empty():
                res = empty_instances(batch_img_metas, rois.device, task_type="bbox", box_type=self.bbox_head[-1].predict_box_type,
                                      num_classes=self.bbox_head[-1].num_classes, score_per_cls=False)
                for r in res:
                    r.roi_inds = rois.new_zeros(0, dtype=torch.long)
                return res

            self._mec_extra = {m: empty() for m in extra}
            self._mec_boxes = [rois.new_zeros(0, 4) for _ in batch_img_metas]
            return empty()
        rois, stage_logits, bbox_preds = self._refine_all_stages(x, rois, batch_img_metas, num_per_img, **kwargs)
        groups = self.mec_class_groups
        results: Dict[str, List[InstanceData]] = {m: [] for m in [primary, *extra]}
        self._mec_boxes = []
        for i, meta in enumerate(batch_img_metas):
            bboxes = self._decode(rois[i], bbox_preds[i], meta, rescale)
            self._mec_boxes.append(bboxes)
            stacked = torch.stack([s[i] for s in stage_logits])  # (K, R, C+1)
            num_classes = stacked.shape[-1] - 1
            for m in results:
                kind, align, stage = parse_mode(m)
                probs = stage_scores(stacked, groups, kind, align=align, tau=float(rcnn_test_cfg.get("tau", 1.0)), stage=stage)
                det_bboxes, det_labels, inds = multiclass_nms(bboxes, probs, rcnn_test_cfg.score_thr, rcnn_test_cfg.nms,
                                                              rcnn_test_cfg.max_per_img, box_dim=4, return_inds=True)
                res = InstanceData()
                res.bboxes, res.scores, res.labels = det_bboxes[:, :-1], det_bboxes[:, -1], det_labels
                res.roi_inds = torch.div(inds, num_classes, rounding_mode="floor")
                results[m].append(res)
        self._mec_extra = {m: results[m] for m in extra}
        return results[primary]

    def _refine_all_stages(self, x, rois, batch_img_metas, num_per_img, **kwargs):
        """Run every stage once; return last-stage rois, each stage's per-image logits, last bbox preds."""
        ms_logits = []
        bbox_preds = None
        for stage in range(self.num_stages):
            out = self._bbox_forward(stage=stage, x=x, rois=rois, **kwargs)
            cls_score, bbox_pred = out["cls_score"], out["bbox_pred"]
            rois = rois.split(num_per_img, 0)
            ms_logits.append(self._stage_logits(stage, cls_score).split(num_per_img, 0))
            bbox_preds = bbox_pred.split(num_per_img, 0) if bbox_pred is not None else (None,) * len(batch_img_metas)
            if stage < self.num_stages - 1:
                head = self.bbox_head[stage]
                scores = cls_score.split(num_per_img, 0)
                if head.custom_activation:
                    scores = [head.loss_cls.get_activation(s) for s in scores]
                refined = []
                for i, meta in enumerate(batch_img_metas):
                    if rois[i].shape[0] > 0:
                        labels = scores[i][:, :-1].argmax(dim=1)
                        boxes = get_box_tensor(head.regress_by_class(rois[i][:, 1:], labels, bbox_preds[i], meta))
                        refined.append(torch.cat([rois[i][:, [0]], boxes], dim=1))
                rois = torch.cat(refined)
        return rois, ms_logits, bbox_preds

    def _mask_stage_logits(self, x, mask_rois: Tensor) -> List[Tensor]:
        """Mask logits (N, C, M, M) of every stage for ``mask_rois`` (Cascade: each stage's own mask head)."""
        return [self._mask_forward(stage, x, mask_rois)["mask_preds"] for stage in range(self.num_stages)]

    def _bbox_kwargs(self) -> dict:
        return {}

    def _masks_for_modes(self, x, metas, per_mode: Dict[str, List[InstanceData]], rescale: bool) -> Dict[str, List[InstanceData]]:
        """Masks for every mode from ONE mask-head pass over the RoIs their detections came from.

        A mask head predicts every class's mask for a RoI, so the heads run once per distinct RoI; each
        distinct (RoI, class) pair is then merged over stages and pasted once, and shared by all modes.
        """
        from mmdet.models.test_time_augs import merge_aug_masks

        names = list(per_mode)
        head = self.mask_head[-1] if isinstance(self.mask_head, torch.nn.ModuleList) else self.mask_head
        num_classes = self.bbox_head[-1].num_classes
        uroi_list, pair_pos, pair_label, inverse, pair_results = [], [], [], [], []
        for i in range(len(metas)):
            roi_inds = torch.cat([per_mode[m][i].roi_inds for m in names])
            keys = roi_inds * num_classes + torch.cat([per_mode[m][i].labels for m in names])
            pairs, inv = torch.unique(keys, return_inverse=True)
            p_roi, p_label = torch.div(pairs, num_classes, rounding_mode="floor"), pairs % num_classes
            uroi = torch.unique(p_roi)
            boxes = self._mec_boxes[i]
            if boxes.size(-1) != 4:  # class-specific regression: each pair has its class's box
                boxes = boxes.view(boxes.size(0), -1, 4)
            uroi_list.append(boxes[uroi] if boxes.dim() == 2 else boxes[uroi, 0])
            pair_pos.append(torch.searchsorted(uroi, p_roi))
            pair_label.append(p_label)
            inverse.append(inv.split([len(per_mode[m][i]) for m in names]))
            pbox = boxes[p_roi] if boxes.dim() == 2 else boxes[p_roi, p_label]
            # labels are 0 here because each pair's mask channel is picked below (one channel per pair)
            pair_results.append(InstanceData(bboxes=pbox, labels=p_label.new_zeros(len(pairs)), scores=pbox.new_ones(len(pairs))))
        counts = [len(u) for u in uroi_list]
        if sum(counts):
            stage_logits = self._mask_stage_logits(x, bbox2roi(uroi_list))
            merged = []
            for i, meta in enumerate(metas):
                chans = pair_pos[i].new_zeros(len(pair_pos[i])) if head.class_agnostic else pair_label[i]
                per_stage = [lg.split(counts, 0)[i][pair_pos[i], chans][:, None].sigmoid() for lg in stage_logits]
                merged.append(merge_aug_masks(per_stage, meta))
        else:
            merged = [r.bboxes.new_zeros(0, 1, head.roi_feat_size * 2, head.roi_feat_size * 2) for r in pair_results]
        pasted = head.predict_by_feat(mask_preds=merged, results_list=pair_results, batch_img_metas=metas,
                                      rcnn_test_cfg=self.test_cfg, rescale=rescale, activate_map=True)
        out: Dict[str, List[InstanceData]] = {m: [] for m in names}
        for i in range(len(metas)):
            for m, inv in zip(names, inverse[i]):
                det = per_mode[m][i]
                out[m].append(InstanceData(bboxes=pasted[i].bboxes[inv], scores=det.scores, labels=det.labels,
                                           masks=pasted[i].masks[inv]))
        return out

    def predict(self, x, rpn_results_list, batch_data_samples, rescale: bool = False):
        metas = [ds.metainfo for ds in batch_data_samples]
        self._mec_extra = {}
        results_list = self.predict_bbox(x, metas, rpn_results_list, rcnn_test_cfg=self.test_cfg,
                                         rescale=rescale if not self.with_mask else False, **self._bbox_kwargs())
        primary = self._requested_modes(self.test_cfg)[0]
        per_mode = {primary: results_list, **self._mec_extra}
        self._mec_extra = {}
        if self.with_mask:
            per_mode = self._masks_for_modes(x, metas, per_mode, rescale)
        else:
            for res_list in per_mode.values():
                for r in res_list:
                    r.pop("roi_inds")
        self._mec_boxes = None
        # Every data sample names its modes, the primary one (also returned as pred_instances) first.
        for i, ds in enumerate(batch_data_samples):
            ds.mec_modes = {m: per_mode[m][i] for m in per_mode}
        return per_mode[primary]


@MODELS.register_module()
class MECCascadeRoIHead(MECHeadMixin, CascadeRoIHead):
    """Cascade (Mask) R-CNN RoI head with MEC expert losses and multi-mode stage ensembles."""


@MODELS.register_module()
class MECHTCRoIHead(MECHeadMixin, HybridTaskCascadeRoIHead):
    """HTC RoI head (without the semantic branch, as for LVIS) with MEC losses and multi-mode ensembles."""

    def _bbox_kwargs(self) -> dict:
        if self.with_semantic:
            raise ValueError("MECHTCRoIHead supports HTC without the semantic branch (LVIS has no stuff maps)")
        return {"semantic_feat": None}

    def _mask_stage_logits(self, x, mask_rois: Tensor) -> List[Tensor]:
        """HTC's mask branch with information flow: every stage's mask logits from one pass."""
        return list(self._mask_forward(stage=-1, x=x, rois=mask_rois, semantic_feat=None, training=False)["mask_preds"])
