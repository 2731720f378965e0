# Runtime shared by every recipe: mmdet's default hooks plus MEC's registrations.
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['mec_cli.models', 'mec_cli.evaluation.metric'], allow_failed_imports=False)
# torch's own default, written out so that `--cfg-options env_cfg.dist_cfg.timeout=SECONDS` names a key that exists
# (seconds a collective may wait for a rank that stopped answering before the job gives up)
env_cfg = dict(dist_cfg=dict(backend='nccl', timeout=1800))
