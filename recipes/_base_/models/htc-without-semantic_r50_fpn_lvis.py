# HTC R50-FPN without the semantic branch (LVIS has no stuff maps), on the LVIS Cascade base:
# interleaved box/mask branches with mask information flow, as mmdet's htc-without-semantic config.
_base_ = './cascade-mask-rcnn_r50_fpn_lvis.py'

htc_mask_head = dict(type='HTCMaskHead', num_convs=4, in_channels=256, conv_out_channels=256, num_classes=1203,
                     loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))
model = dict(
    type='HybridTaskCascade',
    roi_head=dict(type='HybridTaskCascadeRoIHead', interleaved=True, mask_info_flow=True,
                  mask_head=[dict(htc_mask_head, with_conv_res=False), htc_mask_head, htc_mask_head]))
