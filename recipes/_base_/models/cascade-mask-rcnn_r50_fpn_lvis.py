# Cascade Mask R-CNN R50-FPN for LVIS v1 (1,203 classes) with the paper's settings (Appendix A.1):
# RPN 256 anchors at 1:1, R-CNN 512 RoIs at 25% positives, stage IoUs 0.5/0.6/0.7 (mmdet's defaults),
# and up to 300 detections per image at score threshold 1e-4.
_base_ = 'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py'

lvis_num_classes = 1203
stage_bbox_head = dict(
    type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024, roi_feat_size=7, num_classes=lvis_num_classes,
    reg_class_agnostic=True, loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
stage_target_stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
model = dict(
    roi_head=dict(
        bbox_head=[dict(stage_bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                                         target_stds=stds)) for stds in stage_target_stds],
        mask_head=dict(num_classes=lvis_num_classes)),
    test_cfg=dict(rcnn=dict(score_thr=1e-4, max_per_img=300)))
