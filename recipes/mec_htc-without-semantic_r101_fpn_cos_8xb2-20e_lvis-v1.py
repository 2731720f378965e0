# MEC-Net-cos on HTC R101-FPN (paper Table 4 (4)).
_base_ = ['./mec_htc-without-semantic_r101_fpn_8xb2-20e_lvis-v1.py', '_base_/models/cos-bbox-head_lvis.py']
model = dict(roi_head=dict(bbox_head=[
    dict(_base_.cos_bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                               target_stds=stds))
    for stds in _base_.stage_target_stds]))
mec_recipe = dict(name='htc_r101_cos', model='HTC', backbone='R-101-FPN', dataset='lvis_v1', stages=3, mec=True,
                  classifier='cosine')
