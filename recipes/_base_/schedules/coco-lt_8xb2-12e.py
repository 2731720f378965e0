# Appendix A.1 on COCO-LT: as on LVIS, but 12 epochs with x0.1 steps at epochs 8 and 10.
_base_ = './lvis_8xb2-20e.py'
train_cfg = dict(max_epochs=12, val_interval=12)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 10], gamma=0.1),
]
