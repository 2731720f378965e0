# COCO-LT (built by `mec build-coco-lt`) for training, COCO val2017 for evaluation (COCO protocol,
# 100 detections per image). Same pipeline as LVIS (Appendix A.1).
_base_ = './lvis_v1.py'
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/coco_lt_train.json',
                                     data_prefix=dict(img='train2017/')))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/instances_val2017.json',
                                   data_prefix=dict(img='val2017/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json', protocol='coco')
test_evaluator = val_evaluator
mec_dataset = dict(name='coco_lt', num_classes=80, schedule='schedules/coco-lt_8xb2-12e.py')
