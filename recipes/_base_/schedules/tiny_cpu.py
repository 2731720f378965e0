# A short iteration-based CPU schedule for the synthetic dataset: SGD with warm-up and two x0.1 steps.
_base_ = "../runtime.py"
# Validation is left to `mec eval`, which scores every mode from one inference pass.
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300, val_begin=10**9, val_interval=10**9)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(type='MultiStepLR', begin=0, end=300, by_epoch=False, milestones=[240, 280], gamma=0.1),
]
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
                     clip_grad=dict(max_norm=10, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=4)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=2,
                                     save_last=True),
                     logger=dict(type='LoggerHook', interval=10))
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=False)
