# Cascade R50 with seesaw loss (p=0.8, q=2.0; paper Table 1 (9)).
_base_ = './cascade-mask-rcnn_r50_fpn_8xb2-20e_lvis-v1.py'
seesaw_bbox_head = dict(
    type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024, roi_feat_size=7, num_classes=1203,
    reg_class_agnostic=True, loss_cls=dict(type='SeesawLoss', p=0.8, q=2.0, num_classes=1203, loss_weight=1.0),
    loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
model = dict(roi_head=dict(bbox_head=[
    dict(seesaw_bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds))
    for stds in [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]]))
mec_recipe = dict(name='cascade_r50_seesaw_baseline', model='Cascade Mask R-CNN', backbone='R-50-FPN',
                  dataset='lvis_v1', stages=3, mec=False, classifier='linear', loss='seesaw')
