# Tiny Cascade Mask R-CNN baseline on the synthetic dataset: trains on 2 CPU cores in minutes.
_base_ = ['_base_/models/cascade-mask-rcnn_r18-tiny_fpn.py', '_base_/datasets/synth.py', '_base_/schedules/tiny_cpu.py']
mec_recipe = dict(name='tiny_baseline', model='Cascade Mask R-CNN', backbone='R18-tiny', dataset='synth', stages=3,
                  mec=False, classifier='linear')
