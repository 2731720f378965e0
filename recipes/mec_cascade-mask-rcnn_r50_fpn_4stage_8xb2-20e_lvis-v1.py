# MEC with 4 stages and 4 groups, bins 10/100/500 (paper Table 3).
_base_ = ['./cascade-mask-rcnn_r50_fpn_4stage_8xb2-20e_lvis-v1.py', '_base_/models/mec.py']
model = dict(roi_head=dict(type='MECCascadeRoIHead', mec=dict(_base_._mec, bins=[10, 100, 500])),
             test_cfg=dict(rcnn=_base_._mec_test))
mec_recipe = dict(name='cascade_r50_4stage', model='Cascade Mask R-CNN', backbone='R-50-FPN', dataset='lvis_v1',
                  stages=4, mec=True, classifier='linear')
