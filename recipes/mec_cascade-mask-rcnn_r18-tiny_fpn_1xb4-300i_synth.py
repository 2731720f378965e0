# The tiny recipe with MEC: stage k is the expert of frequency group k (lambda 0.7), dynamic ensemble with group alignment.
_base_ = './cascade-mask-rcnn_r18-tiny_fpn_1xb4-300i_synth.py'
model = dict(roi_head=dict(type='MECCascadeRoIHead', mec=dict(class_groups=None, bins=[10, 100], lam=0.7, loss=True)),
             test_cfg=dict(rcnn=dict(ensemble='dynamic', group_align=True, tau=1.0)))
mec_recipe = dict(name='tiny', model='Cascade Mask R-CNN', backbone='R18-tiny', dataset='synth', stages=3, mec=True,
                  classifier='linear')
