# The MEC overlay that every MEC recipe lays over its baseline (the paper's Section 3): stage k is the expert of
# frequency group k (multi-expert loss, lambda 0.7, groups by training instances with bins 10/100), and inference
# is the dynamic ensemble after group alignment (tau 1.0). A leaf lists this piece beside its baseline and places
# the two dicts, naming its own MEC head:
#     model = dict(roi_head=dict(type='MECCascadeRoIHead', mec=_base_._mec), test_cfg=dict(rcnn=_base_._mec_test))
# They are variables, not a `model` of their own, because mmengine refuses a key that two bases both define (the
# baseline defines `model`). Their names start with '_' because every variable of a base becomes a key of the
# resolved config: `mec` drops such helpers (mec_cli.recipes.load_config), so a recipe resolves to exactly the
# config its baseline and this overlay make.
_mec = dict(class_groups=None, bins=[10, 100], lam=0.7, loss=True)
_mec_test = dict(ensemble='dynamic', group_align=True, tau=1.0)
