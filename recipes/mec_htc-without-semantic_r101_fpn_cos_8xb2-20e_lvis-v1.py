# MEC-Net-cos on HTC R101-FPN (paper Table 4 (4)).
_base_ = './mec_htc-without-semantic_r101_fpn_8xb2-20e_lvis-v1.py'
cos_bbox_head = dict(
    type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024, roi_feat_size=7, num_classes=1203, reg_class_agnostic=True,
    cls_predictor_cfg=dict(type='NormedLinear', tempearture=20),
    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0), loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
model = dict(roi_head=dict(bbox_head=[
    dict(cos_bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds))
    for stds in [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]]))
mec_recipe = dict(name='htc_r101_cos', model='HTC', backbone='R-101-FPN', dataset='lvis_v1', stages=3, mec=True, classifier='cosine')
