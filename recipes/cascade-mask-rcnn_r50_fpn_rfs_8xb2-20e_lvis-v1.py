# Cascade R50 with repeat factor sampling (ClassBalancedDataset, threshold 1e-3; paper Table 2(a) (2)).
_base_ = './cascade-mask-rcnn_r50_fpn_8xb2-20e_lvis-v1.py'
train_dataloader = dict(dataset=dict(_delete_=True, type='ClassBalancedDataset', oversample_thr=1e-3,
                                     dataset={{_base_.train_dataloader.dataset}}))
mec_recipe = dict(name='cascade_r50_rfs_baseline', model='Cascade Mask R-CNN', backbone='R-50-FPN', dataset='lvis_v1',
                  stages=3, mec=False, classifier='linear', sampler='rfs')
