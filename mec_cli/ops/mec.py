"""Multi-Expert Cascade math (paper Section 3, equations 1-6) as pure torch functions.

Conventions shared by every function here:

* ``groups`` is a 1-D long tensor of length C giving each *foreground* class its group index in
  0..N-1; group 0 is the rarest. Stage k (0 = lowest IoU threshold) is the expert of group k.
* Logits hold the C class logits first and may carry extra columns after them: MMDetection's
  background logit (C+1 columns), or seesaw loss's two objectness logits (C+2 columns). Extra
  columns are outside every group. **Decision** (the paper is silent): group alignment leaves them
  unchanged, and every ensemble combines them like the plain average of logits, i.e. an extra column
  of an ensemble is the mean of the stages' columns (``mean_prob_ensemble`` averages probabilities,
  background included, as the paper's Section 3.1 writes Cascade R-CNN's ensemble). For seesaw this
  means the MEC ensembles act on the C class logits and the objectness logits are averaged over the
  stages; the head's own activation then turns the combined logits into scores (:func:`stage_scores`).
* Device and dtype always come from the inputs; nothing here imports mmcv, mmdet or mmengine.
* No host synchronisation and no data-dependent shape (so a step on a GPU never waits for the GPU here, and each
  function compiles whole under ``torch.compile(fullgraph=True)``: ``tests/ops/test_compile.py``): group
  membership is a mask or a one-hot matrix of static shape, never ``nonzero`` or boolean indexing. The group count
  N is a shape, so the functions that need it take ``num_groups``; a caller that knows it (the MEC head: once per
  model) passes it, otherwise it is read from ``groups`` with one ``.item()``, a host sync on a GPU.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from mec_cli.ops.modes import ENSEMBLES, GROUP_ENSEMBLES


def _check_groups(groups: Tensor, width: int) -> Tuple[int, bool]:
    """Return (C, has_extra_columns) for logits whose last dimension is ``width`` (C class columns first)."""
    if groups.dim() != 1:
        raise ValueError(f"groups must be 1-D (C,), got shape {tuple(groups.shape)}")
    num_classes = groups.numel()
    if width < num_classes:
        raise ValueError(f"logits have {width} columns but groups describe {num_classes} classes (expected at least C)")
    return num_classes, width > num_classes


def _num_groups(groups: Tensor, num_groups: Optional[int] = None) -> int:
    """N, the group count: ``num_groups`` when the caller knows it, else max(groups) + 1 (a host sync on a GPU)."""
    if num_groups is not None:
        return int(num_groups)
    return int(groups.max().item()) + 1 if groups.numel() else 0


def group_onehot(groups: Tensor, num_groups: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(C,) long -> (C, N) membership matrix: row i is 1 in column group(i), 0 elsewhere.

    Unlike ``F.one_hot`` it reads no value of ``groups`` on the host (``one_hot`` checks them with ``.item()`` on the
    CPU, which ``torch.compile`` cannot trace); a group index outside 0..N-1 gives a row of zeros.
    """
    return (groups.unsqueeze(1) == torch.arange(num_groups, device=groups.device)).to(dtype)


def multi_expert_loss(cls_score: Tensor, labels: Tensor, groups: Tensor, expert_group: int, lam: float = 0.7,
                      reduction: str = "mean") -> Tensor:
    """Multi-expert cross-entropy of one cascade stage (equations 1-2).

    Args:
        cls_score: (R, C+1) logits, background last as in MMDetection; or (R, C) without a background
            column (as seesaw loss scores its classes, leaving the background to an objectness branch).
        labels: (R,) long in 0..C; C is background (0..C-1 without a background column).
        groups: (C,) long group index of each foreground class.
        expert_group: G, the group this stage is the expert of.
        lam: lambda in p_hat = p^lam * p_tilde^(1-lam); 1 gives plain cross-entropy.
        reduction: 'none' (R,), 'mean' or 'sum'.

    Returns:
        -log p_hat_y, where p is the softmax over all C+1 logits and p_tilde the softmax over the
        logits of G's classes only. For y outside G (background included) p_hat_y = p_y.
    """
    if groups.dim() != 1:
        raise ValueError(f"groups must be 1-D (C,), got shape {tuple(groups.shape)}")
    return expert_loss(cls_score, labels, groups == expert_group, lam, reduction)


def expert_loss(cls_score: Tensor, labels: Tensor, in_group: Tensor, lam: float = 0.7,
                reduction: str = "mean") -> Tensor:
    """:func:`multi_expert_loss` with the expert group given as its membership mask ``in_group`` (C,) bool.

    A loss module computes the mask once (a buffer that moves with the module) instead of every step.
    """
    num_classes, has_extra = _check_groups(in_group, cls_score.shape[-1])
    # 1. Plain cross-entropy -log p_y for every row (fused, log space: finite for |logits| ~ 1e4).
    ce = torch.nn.functional.cross_entropy(cls_score, labels, reduction="none")
    if lam == 1.0:
        loss = ce
    else:
        # 2. log p_tilde_y = o_y - logsumexp_{j in G} o_j. The columns outside G hold the dtype's lowest finite
        #    value, whose exp is 0 beside any real logit; an empty G then gives a finite LSE that step 3 never
        #    selects (-inf would send NaN through the gradient of the unselected branch).
        fg = cls_score[:, :num_classes] if has_extra else cls_score
        lse_g = fg.masked_fill(~in_group, torch.finfo(fg.dtype).min).logsumexp(1)
        o_y = cls_score.gather(1, labels.view(-1, 1)).squeeze(1)
        # 3. -log p_hat_y = lam (-log p_y) + (1 - lam)(-log p_tilde_y) inside G, -log p_y outside:
        #    ce + (1 - lam)(lse_g - o_y - ce) for labels in G (extra columns, background, are outside every group).
        label_in_group = torch.nn.functional.pad(in_group, (0, cls_score.shape[-1] - num_classes))[labels]
        loss = ce + torch.where(label_in_group, (1.0 - lam) * (lse_g - o_y - ce), ce.new_zeros(()))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def group_align(logits: Tensor, groups: Tensor, num_groups: Optional[int] = None) -> Tensor:
    """Group alignment (equation 3): o_hat_i = o_i - mean_{j in group(i)} o_j.

    Args:
        logits: (..., C+E); extra columns (background) are returned unchanged.
        groups: (C,) long.
        num_groups: N (default: read from ``groups``, a host sync on a GPU).

    Returns:
        Tensor of the same shape; aligned logits have zero mean within each group.
    """
    num_classes, has_extra = _check_groups(groups, logits.shape[-1])
    fg = logits[..., :num_classes]
    onehot = group_onehot(groups, _num_groups(groups, num_groups), fg.dtype)  # (C, N)
    means = (fg @ onehot) / onehot.sum(0).clamp(min=1)  # (..., N)
    aligned = fg - means @ onehot.T  # each class minus its group's mean (a matmul: gathers are slow to backprop)
    return torch.cat([aligned, logits[..., num_classes:]], -1) if has_extra else aligned


def _background_mean(stage_logits: Tensor, out_fg: Tensor, num_classes: int, has_extra: bool) -> Tensor:
    return torch.cat([out_fg, stage_logits[..., num_classes:].mean(0)], -1) if has_extra else out_fg


def sparse_ensemble(stage_logits: Tensor, groups: Tensor, num_groups: Optional[int] = None) -> Tensor:
    """Sparse ensemble (equation 4): class i takes its logit from stage g(i), its group's expert.

    Args:
        stage_logits: (K, R, C+E) with K equal to the number of groups and E >= 0 extra columns.
        groups: (C,) long.
        num_groups: N, checked against K (default: read from ``groups``, a host sync on a GPU).

    Returns:
        (R, C+E); each extra column is the mean over stages.
    """
    num_classes, has_extra = _check_groups(groups, stage_logits.shape[-1])
    num_groups = _num_groups(groups, num_groups)
    if stage_logits.shape[0] < num_groups:
        raise ValueError(f"sparse ensemble needs one stage per group: {stage_logits.shape[0]} stages, "
                         f"{num_groups} groups")
    fg = stage_logits[..., :num_classes]
    idx = groups.view(1, 1, -1).expand(1, fg.shape[1], num_classes)
    out = fg.gather(0, idx).squeeze(0)
    return _background_mean(stage_logits, out, num_classes, has_extra)


def dynamic_weights(stage_logits: Tensor, groups: Tensor, tau: float = 1.0,
                    num_groups: Optional[int] = None) -> Tensor:
    """Ensemble weights of the dynamic ensemble (equations 5-6).

    w_i^k = softmax over stages k of LSE_{j in group(i)}(o_j^k / tau).

    Args:
        stage_logits: (K, R, C+E), E >= 0 extra columns (background, objectness).
        groups: (C,) long.
        num_groups: N (default: read from ``groups``, a host sync on a GPU).

    Returns:
        (K, R, C) weights that sum to 1 over K for every RoI and class.
    """
    num_classes, _ = _check_groups(groups, stage_logits.shape[-1])
    fg = stage_logits[..., :num_classes] / tau
    num_groups = _num_groups(groups, num_groups)
    # LSE per (stage, RoI, group) in one pass: exp(o - m_g) summed by a one-hot matmul, plus m_g.
    # m_g (the group max) only stabilises, so it is detached; empty groups are clamped, never NaN.
    index = groups.expand_as(fg)
    onehot = group_onehot(groups, num_groups, fg.dtype)  # (C, N)
    with torch.no_grad():
        m = fg.new_full(fg.shape[:-1] + (num_groups,), float("-inf")).scatter_reduce(-1, index, fg, "amax")
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        m_per_class = m @ onehot.T
    sums = torch.exp(fg - m_per_class) @ onehot
    lse = torch.log(sums.clamp_min(torch.finfo(fg.dtype).tiny)) + m  # (K, R, N)
    w_group = torch.softmax(lse, dim=0)
    return w_group @ onehot.T  # (K, R, C): each class takes its group's weights


def dynamic_ensemble(stage_logits: Tensor, groups: Tensor, tau: float = 1.0, return_weights: bool = False,
                     num_groups: Optional[int] = None):
    """Dynamic ensemble (equations 5-6): o_i = sum_k w_i^k o_i^k.

    Args:
        stage_logits: (K, R, C+E), E >= 0 extra columns (background, objectness).
        groups: (C,) long.
        tau: temperature; tau -> inf tends to the mean of stages, tau -> 0 selects, per group,
            the stage whose group LSE is largest.
        return_weights: also return the weights (K, R, C) of :func:`dynamic_weights`.
        num_groups: N (default: read from ``groups``, a host sync on a GPU).

    Returns:
        (R, C+E); each extra column is the mean over stages. With ``return_weights``, (logits, weights).
    """
    num_classes, has_extra = _check_groups(groups, stage_logits.shape[-1])
    w = dynamic_weights(stage_logits, groups, tau, num_groups)
    out = _background_mean(stage_logits, (w * stage_logits[..., :num_classes]).sum(0), num_classes, has_extra)
    return (out, w) if return_weights else out


def mean_logit_ensemble(stage_logits: Tensor) -> Tensor:
    """Average of the stage logits, (K, R, D) -> (R, D): what MMDetection's CascadeRoIHead does."""
    return stage_logits.mean(0)


def mean_prob_ensemble(stage_logits: Tensor) -> Tensor:
    """Average of the stage softmax probabilities, (K, R, D) -> (R, D): the paper's Cascade baseline.

    Returns probabilities, not logits.
    """
    return torch.softmax(stage_logits, dim=-1).mean(0)


def _softmax(logits: Tensor) -> Tensor:
    return torch.softmax(logits, dim=-1)


def stage_scores(stage_logits: Tensor, groups: Optional[Tensor], mode: str = "dynamic", align: bool = False,
                 tau: float = 1.0, stage: Optional[int] = None,
                 activation: Optional[Callable[[Tensor], Tensor]] = None, return_weights: bool = False,
                 num_groups: Optional[int] = None):
    """Class scores of one scoring mode from all stages' logits.

    Args:
        stage_logits: (K, R, D) logits of K stages: C class logits, then any extra columns (background).
        groups: (C,) long; needed by ``align``, 'sparse' and 'dynamic'.
        mode: one of ``ENSEMBLES``, or 'stage' to score with stage ``stage`` (0-based) alone.
        align: apply group alignment to every stage's logits first.
        tau: temperature of the dynamic ensemble.
        activation: turns (R, D) logits into (R, C+1) scores, background last; softmax by default. A
            head with a custom activation (seesaw: classes times objectness) passes its own.
        return_weights: also return the dynamic ensemble's weights (K, R, C) (None for other modes).
        num_groups: N, the group count (default: read from ``groups`` when a mode needs it, a host sync on a GPU).

    Returns:
        (R, C+1) scores: the activation of the combined logits; for 'mean_probs' the mean of the
        stages' activated scores. With ``return_weights``, a pair (scores, weights or None).
    """
    if (align or mode in GROUP_ENSEMBLES) and groups is None:
        raise ValueError(f"mode {mode!r} with align={align} needs per-class groups")
    act = activation or _softmax
    logits = group_align(stage_logits, groups, num_groups) if align else stage_logits
    weights = None
    if mode == "stage":
        if stage is None or not 0 <= stage < logits.shape[0]:
            raise ValueError(f"stage must be in 0..{logits.shape[0] - 1}, got {stage}")
        scores = act(logits[stage])
    elif mode == "mean_probs":
        scores = mean_prob_ensemble(logits) if activation is None else torch.stack([act(s) for s in logits]).mean(0)
    elif mode == "mean_logits":
        scores = act(mean_logit_ensemble(logits))
    elif mode == "sparse":
        scores = act(sparse_ensemble(logits, groups, num_groups))
    elif mode == "dynamic":
        combined, weights = dynamic_ensemble(logits, groups, tau, return_weights=True, num_groups=num_groups)
        scores = act(combined)
    else:
        raise ValueError(f"unknown mode {mode!r}; expected 'stage' or one of {ENSEMBLES}")
    return (scores, weights) if return_weights else scores
