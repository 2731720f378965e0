# Appendix A.2's LVIS schedule: as A.1 (lvis_8xb2-20e.py, the recipes' default), but the learning rate steps
# x0.1 at epochs 12 and 16 instead of 16 and 18. Select it with `mec train --schedule lvis_8xb2-20e_steps-12-16`.
_base_ = './lvis_8xb2-20e.py'
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=20, by_epoch=True, milestones=[12, 16], gamma=0.1),
]
