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
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.layers import multiclass_nms
from mmdet.models.roi_heads import CascadeRoIHead, HybridTaskCascadeRoIHead
from mmdet.models.test_time_augs import merge_aug_masks
from mmdet.models.utils import empty_instances
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi, get_box_tensor, scale_boxes
from mmengine.structures import InstanceData
from torch import Tensor

from mec_cli.ops import stage_scores
from mec_cli.ops.modes import BASELINE_MODE, all_modes, mode_name, needs_groups, parse_mode

__all__ = ["MECCascadeRoIHead", "MECHTCRoIHead", "ModeResult", "ImageResult", "MaskPairs", "all_modes", "mode_name",
           "parse_mode"]


@dataclass
class ModeResult:
    """One scoring mode's detections in one image, before masks.

    ``instances`` holds bboxes (N, 4), scores (N,) and labels (N,), plus ``stage_weights`` (N, K) for the
    dynamic modes: the weight w^k (eq. 5) each stage had in the detection's class. ``roi_inds`` (N,) names
    the RoI each detection came from.
    """

    instances: InstanceData
    roi_inds: Tensor


@dataclass
class ImageResult:
    """Every requested mode's detections in one image, and the last-stage boxes of its RoIs.

    ``boxes`` is (R, 4) for class-agnostic regression and (R, C, 4) for class-specific regression.
    """

    modes: Dict[str, ModeResult]
    boxes: Tensor


@dataclass
class MaskPairs:
    """The distinct (RoI, class) pairs of every mode's detections in one image, for one shared mask-head pass.

    ``unit_boxes`` (U, 4) are the boxes the mask head runs on; each pair has its unit ``pair_unit`` (P,), its class
    ``pair_label`` (P,) and the box its mask is pasted at ``pair_boxes`` (P, 4); ``per_mode`` maps each mode to the
    pair of each of its detections ((N,) per mode).
    """

    unit_boxes: Tensor
    pair_unit: Tensor
    pair_label: Tensor
    pair_boxes: Tensor
    per_mode: Dict[str, Tensor]


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
                raise ValueError(f"MEC needs one group per stage: {num_stages} stages but class_groups has "
                                 f"{num_groups} groups")
        elif self.mec_loss:
            raise ValueError("MEC heads need mec.class_groups (one group index per class): from a groups.json, or "
                             "computed from the training annotations (mec_cli.launch.resolve_groups)")
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
        """The class groups as a buffer (moved with the model) and their count, both made once here: scoring then
        reads nothing about the groups on the host."""
        groups = None if class_groups is None else torch.as_tensor(list(class_groups), dtype=torch.long)
        self.register_buffer("mec_class_groups", groups, persistent=False)
        self.mec_num_groups = None if class_groups is None or not len(class_groups) else int(max(class_groups)) + 1

    # ---- test time -------------------------------------------------------------------------
    def _requested_modes(self, cfg) -> Tuple[str, List[str]]:
        primary = mode_name(cfg.get("ensemble", BASELINE_MODE), bool(cfg.get("group_align", False)), cfg.get("stage"))
        extra = [m for m in (cfg.get("modes") or []) if m != primary]
        for m in [primary, *extra]:
            _, _, stage = parse_mode(m)
            if stage is not None and not 0 <= stage < self.num_stages:
                raise ValueError(f"mode {m}: this model has {self.num_stages} stages")
            if needs_groups(m) and self.mec_class_groups is None:
                raise ValueError(f"mode {m} needs class groups: set model.roi_head.mec.class_groups")
        return primary, extra

    def _activation(self, stage: int = -1) -> Optional[Callable[[Tensor], Tensor]]:
        """The score activation of a stage's head: its loss's own for a custom activation (seesaw), else softmax (None).

        MMDetection averages the raw ``cls_score`` of all stages and applies the last head's activation; the MEC
        modes combine the same raw logits (C classes first; seesaw's two objectness logits are extra columns
        that every ensemble averages, see :mod:`mec_cli.ops.mec`), so ``mean_logits`` reproduces it exactly.
        """
        head = self.bbox_head[stage]
        return head.loss_cls.get_activation if head.custom_activation else None

    def _decode(self, roi: Tensor, bbox_pred: Tensor, img_meta: dict, rescale: bool) -> Tensor:
        """Last-stage boxes of one image's RoIs, decoded and optionally rescaled, as BBoxHead does: (R, 4) or
        (R, C, 4)."""
        head = self.bbox_head[-1]
        img_shape = img_meta["img_shape"]
        num_cls = 1 if head.reg_class_agnostic else head.num_classes
        if bbox_pred is not None:
            rois = roi.repeat_interleave(num_cls, dim=0)
            bboxes = head.bbox_coder.decode(rois[..., 1:], bbox_pred.view(-1, head.bbox_coder.encode_size),
                                            max_shape=img_shape)
        else:
            bboxes = roi[:, 1:].clone()
            bboxes[:, [0, 2]].clamp_(min=0, max=img_shape[1])
            bboxes[:, [1, 3]].clamp_(min=0, max=img_shape[0])
        if rescale and bboxes.size(0) > 0:
            bboxes = scale_boxes(bboxes, [1 / s for s in img_meta["scale_factor"]])
        bboxes = get_box_tensor(bboxes).view(roi.size(0), -1, 4)
        return bboxes[:, 0] if num_cls == 1 else bboxes

    def _detect_all_modes(self, x: Tuple[Tensor], metas: List[dict], rpn_results_list, modes: Sequence[str], cfg,
                          rescale: bool, **kwargs) -> List[ImageResult]:
        """Run every stage once and score each mode from the same stage logits; NMS per mode."""
        proposals = [res.bboxes for res in rpn_results_list]
        num_per_img = tuple(len(p) for p in proposals)
        rois = bbox2roi(proposals)
        head = self.bbox_head[-1]
        if rois.shape[0] == 0:
            boxes = rois.new_zeros(0, 4) if head.reg_class_agnostic else rois.new_zeros(0, head.num_classes, 4)
            empty = [empty_instances(metas, rois.device, task_type="bbox", box_type=head.predict_box_type,
                                     num_classes=head.num_classes, score_per_cls=False) for _ in modes]
            return [ImageResult({m: ModeResult(empty[k][i], rois.new_zeros(0, dtype=torch.long)) for k,
                                 m in enumerate(modes)},
                                boxes) for i in range(len(metas))]
        rois, stage_logits, bbox_preds = self._refine_all_stages(x, rois, metas, num_per_img, **kwargs)
        groups, tau, activation = self.mec_class_groups, float(cfg.get("tau", 1.0)), self._activation()
        specs = [(m, *parse_mode(m)) for m in modes]
        out = []
        for i, meta in enumerate(metas):
            boxes = self._decode(rois[i], bbox_preds[i], meta, rescale)
            flat = boxes.reshape(boxes.size(0), -1)
            stacked = torch.stack([s[i] for s in stage_logits])  # (K, R, C + extra columns)
            results = {}
            for m, kind, align, stage in specs:
                scores, weights = stage_scores(stacked, groups, kind, align=align, tau=tau, stage=stage,
                                               activation=activation, return_weights=True,
                                               num_groups=self.mec_num_groups)
                num_classes = scores.shape[-1] - 1
                det_bboxes, det_labels, inds = multiclass_nms(flat, scores, cfg.score_thr, cfg.nms, cfg.max_per_img,
                                                              box_dim=4, return_inds=True)
                roi_inds = torch.div(inds, num_classes, rounding_mode="floor")
                inst = InstanceData(bboxes=det_bboxes[:, :-1], scores=det_bboxes[:, -1], labels=det_labels)
                if weights is not None:
                    inst.stage_weights = weights[:, roi_inds, det_labels].T  # (N, K)
                results[m] = ModeResult(inst, roi_inds)
            out.append(ImageResult(results, boxes))
        return out

    def predict_bbox(self, x: Tuple[Tensor], batch_img_metas: List[dict], rpn_results_list, rcnn_test_cfg,
                     rescale: bool = False, **kwargs) -> List[InstanceData]:
        """MMDetection's interface: the primary mode's detections of each image."""
        primary, _ = self._requested_modes(rcnn_test_cfg)
        images = self._detect_all_modes(x, batch_img_metas, rpn_results_list, [primary], rcnn_test_cfg, rescale,
                                        **kwargs)
        return [img.modes[primary].instances for img in images]

    def _refine_all_stages(self, x, rois, batch_img_metas, num_per_img, **kwargs):
        """Run every stage once; return last-stage rois, each stage's per-image raw logits, last bbox preds."""
        ms_logits = []
        bbox_preds = None
        for stage in range(self.num_stages):
            out = self._bbox_forward(stage=stage, x=x, rois=rois, **kwargs)
            cls_score, bbox_pred = out["cls_score"], out["bbox_pred"]
            rois = rois.split(num_per_img, 0)
            ms_logits.append(cls_score.split(num_per_img, 0))
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

    # ---- masks: one mask-head pass for every mode's detections ----------------------------------------------
    def _mask_stage_logits(self, x, mask_rois: Tensor) -> List[Tensor]:
        """Mask logits (N, C, M, M) of every stage for ``mask_rois`` (Cascade: each stage's own mask head)."""
        return [self._mask_forward(stage, x, mask_rois)["mask_preds"] for stage in range(self.num_stages)]

    def _bbox_kwargs(self) -> dict:
        return {}

    def _last_mask_head(self):
        return self.mask_head[-1] if isinstance(self.mask_head, torch.nn.ModuleList) else self.mask_head

    def _mask_pairs(self, img: ImageResult, names: Sequence[str], num_classes: int) -> MaskPairs:
        """The distinct (RoI, class) pairs of all modes' detections in one image, and the boxes the mask head runs on.

        A detection's mask is predicted at its own box, as MMDetection does: the RoI's box under class-agnostic
        regression (so one mask-head row serves every class of that RoI), the box of the detection's class under
        class-specific regression (one row per pair).
        """
        roi_inds = torch.cat([img.modes[m].roi_inds for m in names])
        labels = torch.cat([img.modes[m].instances.labels for m in names])
        pairs, inverse = torch.unique(roi_inds * num_classes + labels, return_inverse=True)
        p_roi, p_label = torch.div(pairs, num_classes, rounding_mode="floor"), pairs % num_classes
        if img.boxes.dim() == 2:  # class-agnostic: one unit per distinct RoI
            units, p_unit = torch.unique(p_roi, return_inverse=True)
            unit_boxes, pair_boxes = img.boxes[units], img.boxes[p_roi]
        else:  # class-specific: every pair has its own box
            p_unit = torch.arange(len(pairs), device=pairs.device)
            unit_boxes = pair_boxes = img.boxes[p_roi, p_label]
        per_mode = inverse.split([len(img.modes[m].roi_inds) for m in names])
        return MaskPairs(unit_boxes, p_unit, p_label, pair_boxes, dict(zip(names, per_mode)))

    def _merged_pair_masks(self, x, metas, pairs: List[MaskPairs]) -> List[Tensor]:
        """Mask probabilities (P, 1, M, M) of each image's pairs, merged over the stages as MMDetection merges them."""
        head = self._last_mask_head()
        counts = [len(p.unit_boxes) for p in pairs]
        if not sum(counts):
            return [p.unit_boxes.new_zeros(0, 1, head.roi_feat_size * 2, head.roi_feat_size * 2) for p in pairs]
        stage_logits = self._mask_stage_logits(x, bbox2roi([p.unit_boxes for p in pairs]))
        merged = []
        for i, (meta, p) in enumerate(zip(metas, pairs)):
            chans = p.pair_unit.new_zeros(len(p.pair_unit)) if head.class_agnostic else p.pair_label
            per_stage = [lg.split(counts, 0)[i][p.pair_unit, chans][:, None].sigmoid() for lg in stage_logits]
            merged.append(merge_aug_masks(per_stage, meta))
        return merged

    def _paste_pair_masks(self, merged: List[Tensor], pairs: List[MaskPairs], metas,
                          rescale: bool) -> List[InstanceData]:
        """Each pair's mask pasted into its image at its box (bboxes (P, 4), masks (P, H, W)), once for every mode."""
        # the pair's mask channel is already picked, hence label 0 for the paste
        to_paste = [InstanceData(bboxes=p.pair_boxes, labels=p.pair_label.new_zeros(len(p.pair_label)),
                                 scores=p.pair_boxes.new_ones(len(p.pair_label))) for p in pairs]
        return self._last_mask_head().predict_by_feat(mask_preds=merged, results_list=to_paste, batch_img_metas=metas,
                                                      rcnn_test_cfg=self.test_cfg, rescale=rescale, activate_map=True)

    @staticmethod
    def _detections_with_masks(img: ImageResult, pasted: InstanceData, pairs: MaskPairs) -> Dict[str, InstanceData]:
        """Every mode's detections in one image, each with the box and mask of its (RoI, class) pair."""
        out = {}
        for m, inverse in pairs.per_mode.items():
            det = img.modes[m].instances
            inst = InstanceData(bboxes=pasted.bboxes[inverse], scores=det.scores, labels=det.labels,
                                masks=pasted.masks[inverse])
            if "stage_weights" in det:
                inst.stage_weights = det.stage_weights
            out[m] = inst
        return out

    def _masks_for_modes(self, x, metas, images: List[ImageResult], rescale: bool) -> Dict[str, List[InstanceData]]:
        """Every mode's detections with masks, from ONE mask-head pass over the boxes they need.

        1. the distinct (RoI, class) pairs of all modes' detections, per image;
        2. one mask-head pass over their boxes, merged over the stages;
        3. each pair's mask pasted once;
        4. every mode's detections take the mask of their pair.
        """
        names = list(images[0].modes) if images else []
        pairs = [self._mask_pairs(img, names, self.bbox_head[-1].num_classes) for img in images]
        pasted = self._paste_pair_masks(self._merged_pair_masks(x, metas, pairs), pairs, metas, rescale)
        per_image = [self._detections_with_masks(img, paste, p) for img, paste, p in zip(images, pasted, pairs)]
        return {m: [dets[m] for dets in per_image] for m in names}

    def predict(self, x, rpn_results_list, batch_data_samples, rescale: bool = False):
        """Every requested mode from one pass; each data sample gets ``mec_modes`` (primary first), the primary is
        returned."""
        metas = [ds.metainfo for ds in batch_data_samples]
        primary, extra = self._requested_modes(self.test_cfg)
        images = self._detect_all_modes(x, metas, rpn_results_list, [primary, *extra], self.test_cfg,
                                        rescale=rescale and not self.with_mask, **self._bbox_kwargs())
        if self.with_mask:
            per_mode = self._masks_for_modes(x, metas, images, rescale)
        else:
            per_mode = {m: [img.modes[m].instances for img in images] for m in [primary, *extra]}
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
