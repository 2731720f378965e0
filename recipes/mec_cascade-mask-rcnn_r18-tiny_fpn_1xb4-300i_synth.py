# The tiny recipe with MEC: stage k is the expert of frequency group k (lambda 0.7), dynamic ensemble with group
# alignment.
_base_ = ['./cascade-mask-rcnn_r18-tiny_fpn_1xb4-300i_synth.py', '_base_/models/mec.py']
model = dict(roi_head=dict(type='MECCascadeRoIHead', mec=_base_._mec), test_cfg=dict(rcnn=_base_._mec_test))
mec_recipe = dict(name='tiny', model='Cascade Mask R-CNN', backbone='R18-tiny', dataset='synth', stages=3, mec=True,
                  classifier='linear')
