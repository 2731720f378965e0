# HTC R50-FPN (no semantic branch) baseline on LVIS v1 (paper Table 1 (5)).
_base_ = ['_base_/models/htc-without-semantic_r50_fpn_lvis.py', '_base_/datasets/lvis_v1.py',
          '_base_/schedules/lvis_8xb2-20e.py']
mec_recipe = dict(name='htc_r50_baseline', model='HTC', backbone='R-50-FPN', dataset='lvis_v1', stages=3, mec=False,
                  classifier='linear')
