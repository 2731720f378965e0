"""MMDetection adapters, registered into mmdet's registries (the `custom_imports` target of every recipe)."""
from mec_cli.models.ddp import MECDistributedDataParallel
from mec_cli.models.losses import MECMultiExpertLoss, MECSeesawLoss
from mec_cli.models.roi_heads import MECCascadeRoIHead, MECHTCRoIHead

__all__ = ["MECDistributedDataParallel", "MECMultiExpertLoss", "MECSeesawLoss", "MECCascadeRoIHead", "MECHTCRoIHead"]
