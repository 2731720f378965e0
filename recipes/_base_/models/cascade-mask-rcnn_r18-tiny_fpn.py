# A real Cascade Mask R-CNN shrunk to train on 2 CPU cores: ResNet-18 from scratch (no pretrained
# weights), 64-channel FPN, small heads, anchors sized for the synthetic 160 px images.
_base_ = 'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py'

num_classes = 24
tiny_bbox_head = dict(
    type='Shared2FCBBoxHead', in_channels=64, fc_out_channels=256, roi_feat_size=7, num_classes=num_classes,
    reg_class_agnostic=True,
    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(depth=18, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=[
            dict(tiny_bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                                 target_stds=[0.1, 0.1, 0.2, 0.2])),
            dict(tiny_bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                                 target_stds=[0.05, 0.05, 0.1, 0.1])),
            dict(tiny_bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                                 target_stds=[0.033, 0.033, 0.067, 0.067])),
        ],
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(in_channels=64, conv_out_channels=64, num_classes=num_classes)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=[dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=t, neg_iou_thr=t, min_pos_iou=t, ignore_iof_thr=-1,
                                 match_low_quality=False),
                   sampler=dict(type='RandomSampler', num=128, pos_fraction=0.25, neg_pos_ub=-1,
                                add_gt_as_proposals=True),
                   mask_size=28, pos_weight=-1, debug=False) for t in (0.5, 0.6, 0.7)]),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300), rcnn=dict(score_thr=1e-4, max_per_img=50)))
