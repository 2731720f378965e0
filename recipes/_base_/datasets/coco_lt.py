# COCO-LT (built by `mec build-coco-lt`) for training, COCO val2017 for evaluation. Same pipeline as LVIS
# (Appendix A.1). Evaluated with the COCO protocol, so the model keeps MMDetection's COCO test settings:
# at most 100 detections per image at score >= 0.05 (mec_dataset.test_cfg, applied when this part is swapped in).
_base_ = './lvis_v1.py'
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, ann_file='annotations/coco_lt_train.json',
                                     data_prefix=dict(img='train2017/')))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root,
                                   ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json', protocol='coco')
test_evaluator = val_evaluator
mec_dataset = dict(name='coco_lt', num_classes=80, schedule='schedules/coco-lt_8xb2-12e.py', protocol='coco',
                   test_cfg=dict(rcnn=dict(score_thr=0.05, max_per_img=100)))
