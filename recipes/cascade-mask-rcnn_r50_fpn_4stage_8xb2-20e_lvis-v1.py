# Cascade R50 baseline with 4 stages (paper Table 3).
_base_ = './cascade-mask-rcnn_r50_fpn_8xb2-20e_lvis-v1.py'
# Stage IoU thresholds 0.5/0.6/0.7/0.75; the 4th stage regresses with halved target stds again.
four_stage_head = dict(
    type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024, roi_feat_size=7, num_classes=1203,
    reg_class_agnostic=True, loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
model = dict(
    roi_head=dict(
        num_stages=4, stage_loss_weights=[1, 0.5, 0.25, 0.125],
        bbox_head=[dict(four_stage_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                                         target_stds=stds))
                   for stds in [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067],
                                [0.025, 0.025, 0.05, 0.05]]]),
    train_cfg=dict(rcnn=[
        dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                           match_low_quality=False, ignore_iof_thr=-1),
             sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
             mask_size=28, pos_weight=-1, debug=False) for iou in [0.5, 0.6, 0.7, 0.75]]))
mec_recipe = dict(name='cascade_r50_4stage_baseline', model='Cascade Mask R-CNN', backbone='R-50-FPN',
                  dataset='lvis_v1', stages=4, mec=False, classifier='linear')
