# MEC-Net-cos: Cascade R50 with MEC and a cosine classifier (paper Table 1 (12), Table 4 (3)).
_base_ = ['./cascade-mask-rcnn_r50_fpn_cos_8xb2-20e_lvis-v1.py', '_base_/models/mec.py']
model = dict(roi_head=dict(type='MECCascadeRoIHead', mec=_base_._mec), test_cfg=dict(rcnn=_base_._mec_test))
mec_recipe = dict(name='cascade_r50_cos', model='Cascade Mask R-CNN', backbone='R-50-FPN', dataset='lvis_v1', stages=3,
                  mec=True, classifier='cosine')
