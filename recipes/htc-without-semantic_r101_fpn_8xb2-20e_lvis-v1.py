# HTC R101-FPN (no semantic branch) baseline on LVIS v1 (paper Table 1 (7)).
_base_ = './htc-without-semantic_r50_fpn_8xb2-20e_lvis-v1.py'
model = dict(backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101')))
mec_recipe = dict(name='htc_r101_baseline', model='HTC', backbone='R-101-FPN', dataset='lvis_v1', stages=3, mec=False,
                  classifier='linear')
