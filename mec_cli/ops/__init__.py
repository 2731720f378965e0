"""MEC math as pure torch functions; no mmcv, mmdet or mmengine imports here.

The torch functions are imported on first use, so that ``mec_cli.ops.modes`` (names only) stays cheap
for the CLI and the reports.
"""
from mec_cli.ops.modes import ENSEMBLES

_MEC = ("multi_expert_loss", "expert_loss", "group_onehot", "group_align", "sparse_ensemble", "dynamic_weights",
        "dynamic_ensemble", "mean_logit_ensemble", "mean_prob_ensemble", "stage_scores")
__all__ = ["ENSEMBLES", *_MEC]


def __getattr__(name: str):
    if name in _MEC:
        from mec_cli.ops import mec  # noqa: PLC0415  (torch on first use, as the docstring says)

        return getattr(mec, name)
    raise AttributeError(f"module 'mec_cli.ops' has no attribute {name!r}")
