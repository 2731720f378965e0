# Cascade Mask R-CNN R101-FPN baseline on LVIS v1 (paper Table 1 (3)).
_base_ = './cascade-mask-rcnn_r50_fpn_8xb2-20e_lvis-v1.py'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
mec_recipe = dict(name='cascade_r101_baseline', model='Cascade Mask R-CNN', backbone='R-101-FPN', dataset='lvis_v1',
                  stages=3, mec=False, classifier='linear')
