# The synthetic long-tailed dataset of `mec synth` (LVIS v1 format, 160 px PNG images).
dataset_type = 'LVISV1Dataset'
data_root = 'data/synth/'
metainfo = dict(classes=(
    'red_circle', 'green_square', 'blue_triangle', 'yellow_diamond', 'magenta_pentagon', 'cyan_hexagon', 'red_star',
    'green_cross', 'green_circle', 'blue_square', 'yellow_triangle', 'magenta_diamond', 'cyan_pentagon', 'red_hexagon',
    'green_star', 'blue_cross', 'blue_circle', 'yellow_square', 'magenta_triangle', 'cyan_diamond', 'red_pentagon',
    'green_hexagon', 'blue_star', 'yellow_cross'))
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    # this part always comes with the iteration-based tiny_cpu schedule (mec_dataset below), hence mmdet's sampler
    # for iteration-based training, which never ends an epoch
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, metainfo=metainfo, ann_file='annotations/lvis_v1_train.json',
                 data_prefix=dict(img=''), filter_cfg=dict(filter_empty_gt=True, min_size=4), pipeline=train_pipeline,
                 backend_args=backend_args))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, metainfo=metainfo, ann_file='annotations/lvis_v1_val.json',
                 data_prefix=dict(img=''), test_mode=True, pipeline=test_pipeline, backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(type='MECMetric', ann_file=data_root + 'annotations/lvis_v1_val.json', metric=['bbox', 'segm'],
                     protocol='lvis')
test_evaluator = val_evaluator
# Evaluated with the LVIS protocol (federated, 300 per image); the tiny models keep 50 per image, enough for
# images with at most a dozen objects.
mec_dataset = dict(name='synth', num_classes=24, schedule='schedules/tiny_cpu.py', protocol='lvis',
                   test_cfg=dict(rcnn=dict(score_thr=1e-4, max_per_img=50)))
