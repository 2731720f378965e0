# Appendix A.1 on LVIS, the recipes' default: SGD (momentum 0.9, weight decay 1e-4), lr 0.02 for a total batch of
# 16 (8 GPUs x 2), linear warm-up over 1,000 iterations from 0.002, 20 epochs with x0.1 steps at epochs 16 and 18.
# Appendix A.2 gives steps at 12 and 16 instead: lvis_8xb2-20e_steps-12-16.py (`mec train --schedule ...`).
_base_ = '../runtime.py'
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=20, val_interval=20)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=20, by_epoch=True, milestones=[16, 18], gamma=0.1),
]
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4))
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
