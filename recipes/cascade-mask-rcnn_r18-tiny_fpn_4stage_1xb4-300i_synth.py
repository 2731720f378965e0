# The tiny baseline with 4 stages (IoU 0.5/0.6/0.7/0.75), the CPU stand-in of cascade_r50_4stage_baseline (paper
# Table 3) for `mec study stages --family tiny`.
_base_ = './cascade-mask-rcnn_r18-tiny_fpn_1xb4-300i_synth.py'
model = dict(
    roi_head=dict(
        num_stages=4, stage_loss_weights=[1, 0.5, 0.25, 0.125],
        bbox_head=[dict(_base_.tiny_bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                                                target_stds=stds))
                   for stds in [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067],
                                [0.025, 0.025, 0.05, 0.05]]]),
    train_cfg=dict(rcnn=[
        dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou, ignore_iof_thr=-1,
                           match_low_quality=False),
             sampler=dict(type='RandomSampler', num=128, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
             mask_size=28, pos_weight=-1, debug=False) for iou in [0.5, 0.6, 0.7, 0.75]]))
mec_recipe = dict(name='tiny_4stage_baseline', model='Cascade Mask R-CNN', backbone='R18-tiny', dataset='synth',
                  stages=4, mec=False, classifier='linear')
