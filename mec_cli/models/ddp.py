"""A DDP wrapper that also runs on the CPU (gloo), for multi-process training without a GPU."""
from __future__ import annotations

import torch
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class MECDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper, minus the ``device_ids`` that torch refuses for CPU modules."""

    def __init__(self, module, device_ids=None, **kwargs):
        if not torch.cuda.is_available():
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)
