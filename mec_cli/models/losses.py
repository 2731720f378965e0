"""Registered MEC classification losses: thin classes that hold configuration and the group buffer.

The math lives in :func:`mec_cli.ops.multi_expert_loss`; these classes only adapt it to MMDetection's
loss interface (sample weights, ``avg_factor``, ``reduction_override``), like mmdet's seesaw loss
splits ``seesaw_ce_loss`` from ``SeesawLoss``. Each holds its expert group's membership mask as a buffer, made
once when the model is built and moved with it, so that a training step reads no group data on the host.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmdet.models.losses import SeesawLoss
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS
from torch import Tensor, nn

from mec_cli.ops import expert_loss


def _groups_buffer(class_groups: Optional[Sequence[int]]) -> Tensor:
    if class_groups is None:
        raise ValueError("MEC losses need class_groups (one group index per class); the MEC head passes its own, from "
                         "the run's groups")
    return torch.as_tensor(list(class_groups), dtype=torch.long)


def _register_group_buffers(module: nn.Module, class_groups: Optional[Sequence[int]], expert_group: int) -> None:
    """``class_groups`` (C,) long and ``expert_mask`` (C,) bool, the classes of ``expert_group``: not saved in
    checkpoints (they come from the run's groups), moved with the module."""
    groups = _groups_buffer(class_groups)
    module.register_buffer("class_groups", groups, persistent=False)
    module.register_buffer("expert_mask", groups == expert_group, persistent=False)


@MODELS.register_module()
class MECMultiExpertLoss(nn.Module):
    """Multi-expert cross-entropy (paper eq. 1-2) for the ``loss_cls`` of one cascade stage.

    Args:
        expert_group: the group this stage is the expert of (stage k -> group k).
        class_groups: group index of each foreground class, in label order (from groups.json).
        lam: lambda; 1.0 gives plain cross-entropy.
    """

    def __init__(self, expert_group: int, class_groups: Optional[Sequence[int]] = None, lam: float = 0.7,
                 reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        self.expert_group = int(expert_group)
        self.lam = float(lam)
        self.reduction = reduction
        self.loss_weight = loss_weight
        _register_group_buffers(self, class_groups, self.expert_group)

    def forward(self, cls_score: Tensor, label: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None, reduction_override: Optional[str] = None, **kwargs) -> Tensor:
        """cls_score (R, C+1), label (R,), weight (R,) -> scalar (or (R,) with reduction 'none')."""
        reduction = reduction_override or self.reduction
        loss = expert_loss(cls_score, label, self.expert_mask, self.lam, reduction="none")
        if weight is not None:
            weight = weight.float()
        return self.loss_weight * weight_reduce_loss(loss, weight=weight, reduction=reduction, avg_factor=avg_factor)


def seesaw_logits(cls_score: Tensor, labels: Tensor, cum_samples: Tensor, p: float, q: float, eps: float) -> Tensor:
    """Seesaw-adjusted logits (R, C): o_j + log(S_ij) for j != label, with mitigation and compensation S."""
    num_classes = cls_score.size(-1)
    onehot = F.one_hot(labels, num_classes)
    weights = cls_score.new_ones(onehot.size())
    if p > 0:  # mitigation: damp negatives of rarer classes
        ratio = cum_samples[None, :].clamp(min=1) / cum_samples[:, None].clamp(min=1)
        index = (ratio < 1.0).float()
        weights = weights * (ratio.pow(p) * index + (1 - index))[labels.long(), :]
    if q > 0:  # compensation: restore negatives that are misclassified with high score
        scores = F.softmax(cls_score.detach(), dim=1)
        self_scores = scores[torch.arange(len(scores), device=scores.device), labels.long()]
        ratio = scores / self_scores[:, None].clamp(min=eps)
        index = (ratio > 1.0).float()
        weights = weights * (ratio.pow(q) * index + (1 - index))
    return cls_score + weights.log() * (1 - onehot)


@MODELS.register_module()
class MECSeesawLoss(SeesawLoss):
    """Seesaw loss whose class term is the multi-expert loss on seesaw-adjusted logits (MEC + seesaw).

    The objectness term and the custom activation are seesaw's own.
    """

    def __init__(self, expert_group: int, class_groups: Optional[Sequence[int]] = None, lam: float = 0.7, **kwargs):
        super().__init__(**kwargs)
        self.expert_group = int(expert_group)
        self.lam = float(lam)
        _register_group_buffers(self, class_groups, self.expert_group)
        self.cls_criterion = self._mec_seesaw_ce

    def _mec_seesaw_ce(self, cls_score, labels, label_weights, cum_samples, num_classes, p, q, eps, reduction,
                       avg_factor):
        logits = seesaw_logits(cls_score, labels, cum_samples, p, q, eps)
        loss = expert_loss(logits, labels, self.expert_mask, self.lam, reduction="none")
        if label_weights is not None:
            label_weights = label_weights.float()
        return weight_reduce_loss(loss, weight=label_weights, reduction=reduction, avg_factor=avg_factor)
