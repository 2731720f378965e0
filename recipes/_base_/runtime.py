# Runtime shared by every recipe: mmdet's default hooks plus MEC's registrations.
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['mec_cli.models', 'mec_cli.evaluation.metric'], allow_failed_imports=False)
