# Cascade Mask R-CNN R-101-FPN with MEC on LVIS v1 (paper Table 1 (4)): stage k is the expert of group k.
_base_ = ['./cascade-mask-rcnn_r101_fpn_8xb2-20e_lvis-v1.py', '_base_/models/mec.py']
model = dict(roi_head=dict(type='MECCascadeRoIHead', mec=_base_._mec), test_cfg=dict(rcnn=_base_._mec_test))
mec_recipe = dict(name='cascade_r101', model='Cascade Mask R-CNN', backbone='R-101-FPN', dataset='lvis_v1', stages=3,
                  mec=True, classifier='linear')
