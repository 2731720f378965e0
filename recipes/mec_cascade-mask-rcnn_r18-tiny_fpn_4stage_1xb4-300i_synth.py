# The tiny recipe with MEC on 4 stages and 4 groups, the CPU stand-in of cascade_r50_4stage (paper Table 3). Bins
# 10/100/200 instead of the paper's 10/100/500: the synthetic data's largest categories hold 300 to 1,000 training
# instances, so a fourth group from 500 would be empty at small sizes.
_base_ = ['./cascade-mask-rcnn_r18-tiny_fpn_4stage_1xb4-300i_synth.py', '_base_/models/mec.py']
model = dict(roi_head=dict(type='MECCascadeRoIHead', mec=dict(_base_._mec, bins=[10, 100, 200])),
             test_cfg=dict(rcnn=_base_._mec_test))
mec_recipe = dict(name='tiny_4stage', model='Cascade Mask R-CNN', backbone='R18-tiny', dataset='synth', stages=4,
                  mec=True, classifier='linear')
