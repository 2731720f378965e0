"""MEC math as pure torch functions; no mmcv, mmdet or mmengine imports here."""
from mec_cli.ops.mec import (ENSEMBLES, dynamic_ensemble, dynamic_weights, group_align, mean_logit_ensemble,
                             mean_prob_ensemble, multi_expert_loss, sparse_ensemble, stage_scores)

__all__ = ["ENSEMBLES", "multi_expert_loss", "group_align", "sparse_ensemble", "dynamic_weights", "dynamic_ensemble",
           "mean_logit_ensemble", "mean_prob_ensemble", "stage_scores"]
