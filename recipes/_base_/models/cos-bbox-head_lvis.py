# The cosine classifier of the paper's Table 1 (11) and Table 4: a stage's bbox head for LVIS v1 (1,203 classes) with
# mmdet's NormedLinear (temperature 20) as its class predictor. A leaf lists this piece beside its recipe and puts
# the head in every stage with that stage's box coder; it is a variable, not a `model`, because mmengine refuses a
# key that two bases both define.
cos_bbox_head = dict(
    type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024, roi_feat_size=7, num_classes=1203,
    reg_class_agnostic=True, cls_predictor_cfg=dict(type='NormedLinear', tempearture=20),
    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
