# HTC R-50-FPN with MEC on LVIS v1 (paper Table 1 (6)): stage k is the expert of group k.
_base_ = ['./htc-without-semantic_r50_fpn_8xb2-20e_lvis-v1.py', '_base_/models/mec.py']
model = dict(roi_head=dict(type='MECHTCRoIHead', mec=_base_._mec), test_cfg=dict(rcnn=_base_._mec_test))
mec_recipe = dict(name='htc_r50', model='HTC', backbone='R-50-FPN', dataset='lvis_v1', stages=3, mec=True,
                  classifier='linear')
