"""Scoring-mode names: the one place that defines them (the MEC head, ``mec eval`` and the reports import them).

A mode says how one detector's stage logits become class scores:

* ``stage1`` .. ``stageK``: one cascade stage alone (stage 1 has the lowest IoU threshold);
* an ensemble of all stages, one of :data:`ENSEMBLES`, optionally with group alignment first (suffix
  ``_ga``): ``mean_logits`` (MMDetection's Cascade/HTC heads average the stage logits, then apply the
  activation), ``mean_probs`` (the average of the stages' probabilities, as the paper's Section 3.1
  writes Cascade R-CNN's ensemble), ``sparse`` (eq. 4) and ``dynamic`` (eqs. 5-6).

**Decision** (one baseline definition): "the baseline" of every report is :data:`BASELINE_MODE`,
``mean_logits``. The paper's models were trained and scored with MMDetection, whose Cascade and HTC heads
average logits, so its baseline rows (Table 1, Table 2(c) row 1 and Table 3: 19.7 mask / 22.1 box AP for
Cascade R50) are ``mean_logits`` numbers, even though Section 3.1 writes the ensemble as a mean of
probabilities (``mean_probs``). Reports take ``--baseline-mode`` to choose the other.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

ENSEMBLES = ("mean_logits", "mean_probs", "sparse", "dynamic")
GROUP_ENSEMBLES = ("sparse", "dynamic")  # the ensembles that read the class groups (as group alignment does)
EVAL_ENSEMBLES = ("mean_probs", "mean_logits", "sparse", "dynamic")  # what `mec eval` scores by default, in this order
BASELINE_MODE = "mean_logits"  # how a plain Cascade/HTC (MMDetection) scores its stages
MEC_MODE = "dynamic_ga"  # the paper's MEC inference: dynamic ensemble after group alignment
GROUP_ALIGN_CHOICES = ("on", "off", "both")
DEFAULT_GROUP_ALIGN = "both"

ModeSpec = Tuple[str, bool, Optional[int]]  # (ensemble or 'stage', group_align, 0-based stage)


def parse_mode(name: str) -> ModeSpec:
    """'stage2' -> ('stage', False, 1); 'dynamic_ga' -> ('dynamic', True, None); 'mean_probs' -> ('mean_probs', False,
    None)."""
    if name.startswith("stage") and name[5:].isdigit():
        return "stage", False, int(name[5:]) - 1
    align = name.endswith("_ga")
    base = name[:-3] if align else name
    if base not in ENSEMBLES:
        raise ValueError(f"unknown scoring mode {name!r}: use stageN or one of {', '.join(ENSEMBLES)} with optional "
                         "_ga")
    return base, align, None


def needs_groups(name: str) -> bool:
    """Whether scoring mode ``name`` reads the class groups: group alignment, the sparse and dynamic ensembles."""
    kind, align, _ = parse_mode(name)
    return align or kind in GROUP_ENSEMBLES


def mode_name(ensemble: str, group_align: bool = False, stage: Optional[int] = None) -> str:
    """Inverse of :func:`parse_mode` (``stage`` is 1-based here, as in test_cfg)."""
    if stage is not None:
        return f"stage{int(stage)}"
    return f"{ensemble}_ga" if group_align else ensemble


def all_modes(num_stages: int) -> List[str]:
    """Every stage alone plus every ensemble with and without group alignment (3 + 8 = 11 for 3 stages)."""
    return [f"stage{k + 1}" for k in range(num_stages)] + [m for e in ENSEMBLES for m in (e, f"{e}_ga")]


def requested_modes(num_stages: int, per_stage: bool, ensembles: Sequence[str], group_align: str) -> List[str]:
    """Mode names in report order: stages first, then each ensemble without and with alignment.

    Raises ValueError naming the unknown ensemble or alignment choice.
    """
    bad = [e for e in ensembles if e not in ENSEMBLES]
    if bad:
        raise ValueError(f"unknown ensemble {bad[0]!r}; choose from {', '.join(ENSEMBLES)}")
    if group_align not in GROUP_ALIGN_CHOICES:
        raise ValueError(f"group alignment must be on, off or both, got {group_align!r}")
    aligns = {"off": [False], "on": [True], "both": [False, True]}[group_align]
    modes = [f"stage{k + 1}" for k in range(num_stages)] if per_stage else []
    return modes + [f"{e}_ga" if a else e for e in ensembles for a in aligns]
