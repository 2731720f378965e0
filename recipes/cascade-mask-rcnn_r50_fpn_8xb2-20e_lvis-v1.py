# Cascade Mask R-CNN R50-FPN baseline on LVIS v1 (paper Table 1 (1)).
_base_ = ['_base_/models/cascade-mask-rcnn_r50_fpn_lvis.py', '_base_/datasets/lvis_v1.py',
          '_base_/schedules/lvis_8xb2-20e.py']
mec_recipe = dict(name='cascade_r50_baseline', model='Cascade Mask R-CNN', backbone='R-50-FPN', dataset='lvis_v1',
                  stages=3, mec=False, classifier='linear')
