# Cascade R50 baseline with a cosine classifier (mmdet's NormedLinear, temperature 20; paper Table 1 (11)).
_base_ = ['./cascade-mask-rcnn_r50_fpn_8xb2-20e_lvis-v1.py', '_base_/models/cos-bbox-head_lvis.py']
model = dict(roi_head=dict(bbox_head=[
    dict(_base_.cos_bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                               target_stds=stds))
    for stds in _base_.stage_target_stds]))
mec_recipe = dict(name='cascade_r50_cos_baseline', model='Cascade Mask R-CNN', backbone='R-50-FPN', dataset='lvis_v1',
                  stages=3, mec=False, classifier='cosine')
