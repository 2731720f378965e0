# LVIS v1 instance segmentation with the paper's pipeline (Appendix A.1): multi-scale training with the
# shorter side 640-800 in steps of 32 (longer side <= 1333), horizontal flip only; test at 1333x800.
# Images are found through each record's coco_url (train2017/..., val2017/...) under data_root.
dataset_type = 'LVISV1Dataset'
data_root = 'data/lvis_v1/'
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768),
                                            (1333, 800)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True), batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/lvis_v1_train.json',
                 data_prefix=dict(img=''), filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=train_pipeline,
                 backend_args=backend_args))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/lvis_v1_val.json',
                 data_prefix=dict(img=''), test_mode=True, pipeline=test_pipeline, backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(type='MECMetric', ann_file=data_root + 'annotations/lvis_v1_val.json', metric=['bbox', 'segm'],
                     protocol='lvis')
test_evaluator = val_evaluator
# The LVIS protocol keeps 300 detections per image; the models keep as many at score >= 1e-4 (Appendix A.1).
mec_dataset = dict(name='lvis_v1', num_classes=1203, schedule='schedules/lvis_8xb2-20e.py', protocol='lvis',
                   test_cfg=dict(rcnn=dict(score_thr=1e-4, max_per_img=300)))
