"""``MECMetric``: an mmengine metric that evaluates every scoring mode of a run with the fast engine.

It collects the primary predictions (``pred_instances``) and, for MEC heads asked for several modes,
each mode in ``mec_modes``; at the end it evaluates every mode against the same indexed ground truth.
The scalar metrics go to mmengine's log as ``<mode>/<bbox|segm|boundary>_<metric>``; the structured result
(modes -> iou type -> metrics, per-category AP included) stays in ``last_results`` for ``mec eval``.

Each image's record carries, for the dynamic modes, the stage weights of its detections ((N, K): the weight
w^k of eq. 5 each stage had in the detection's class), so that the mean stage weight per group
(``modes.<mode>.stage_weights``) is computed over every process's images.

With several processes each rank evaluates its own images and sends rank 0 only its part (the matched
detections, :mod:`mec_cli.evaluation.partial`), which rank 0 merges into exactly the metrics of one process
evaluating everything: the matching, the costly part (mask IoUs above all), runs on every rank, and no
mask travels. Fixed AP, ``--analysis`` and ``--dump-dir`` need every prediction on rank 0 and keep mmengine's
gathering of the predictions.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_utils
from mmdet.registry import METRICS
from mmengine.dist import broadcast_object_list, collect_results, get_dist_info, is_main_process
from mmengine.evaluator import BaseMetric

from mec_cli.evaluation.api import dump_results, evaluate_mode_arrays, iou_types_of
from mec_cli.evaluation.partial import load_ground_truth, merge_rank_parts, rank_part
from mec_cli.io import read_json
from mec_cli.ops.modes import BASELINE_MODE


@METRICS.register_module()
class MECMetric(BaseMetric):
    default_prefix = "mec"

    def __init__(self, ann_file: str, metric: Sequence[str] = ("bbox", "segm"), protocol: str = "lvis",
                 groups_file: Optional[str] = None, default_mode: str = BASELINE_MODE,
                 results_dir: Optional[str] = None,
                 cat_ids: Optional[Sequence[int]] = None, dets_per_class: Optional[int] = None,
                 collect_device: str = "cpu",
                 prefix: Optional[str] = None, analysis: bool = False, boundary_dilation: float = 0.02,
                 per_image: bool = False, **kwargs):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ann_file = ann_file
        self.iou_types = [metric] if isinstance(metric, str) else list(metric)
        self.protocol = protocol
        self.groups_file = groups_file
        self.default_mode = default_mode
        self.results_dir = results_dir
        self.dets_per_class = dets_per_class
        self.analysis = bool(analysis)  # errors and calibration per group (mec eval --analysis)
        self.boundary_dilation = float(boundary_dilation)
        self.per_image = bool(per_image)  # the per-image records of mec report compare --ci
        self.last_results: Dict = {}
        # category id of each label, in the dataset's label order (read from ann_file when not given)
        self._cat_ids: Optional[List[int]] = [int(c) for c in cat_ids] if cat_ids is not None else None

    def _label_to_cat(self) -> List[int]:
        """Category ids in label order: the annotation file's category order, as mmdet's LVIS/COCO datasets use."""
        if self._cat_ids is None:
            self._cat_ids = [int(c["id"]) for c in read_json(self.ann_file)["categories"]]
        return self._cat_ids

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        cats = np.asarray(self._label_to_cat())
        for ds in data_samples:
            modes = ds.get("mec_modes") or {self.default_mode: ds["pred_instances"]}
            img_id = int(ds["img_id"])
            # ONE result per image (all its modes): mmengine's collect_results truncates the gathered list to
            # the dataset length to drop the distributed sampler's padding, so the count must be per image.
            per_image = []
            for mode, pred in modes.items():
                pred = pred if isinstance(pred, dict) else pred.to_dict()
                boxes = pred["bboxes"].detach().cpu().numpy().astype(np.float64)
                xywh = np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]] if len(boxes) else np.zeros((0, 4))
                rec = {"mode": mode, "image_id": np.full(len(boxes), img_id), "bbox": xywh,
                       "score": pred["scores"].detach().cpu().numpy().astype(np.float64),
                       "category_id": cats[pred["labels"].detach().cpu().numpy()]}
                if ("segm" in self.iou_types or "boundary" in self.iou_types) and "masks" in pred:
                    masks = pred["masks"].detach().cpu().numpy().astype(np.uint8)
                    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
                    rec["segm"] = list(rles)
                if "stage_weights" in pred:  # the dynamic modes' weights (mec_cli.models.roi_heads.ModeResult)
                    rec["stage_weights"] = pred["stage_weights"].detach().cpu().numpy().astype(np.float64)
                per_image.append(rec)
            self.results.append(per_image)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        records = [rec for per_image in results for rec in per_image]
        if self.results_dir:
            dump_results(records, self.results_dir)
        self.last_results = evaluate_mode_arrays(records, self.ann_file, self.iou_types, self.protocol,
                                                 self.groups_file,
                                                 self.dets_per_class, self.analysis, self.boundary_dilation,
                                                 self.per_image)
        return self._flat()

    def evaluate(self, size: int) -> dict:
        """Several processes: every rank matches its own images and rank 0 merges the parts (module docstring);
        otherwise (one process, or Fixed AP, --analysis, --dump-dir) mmengine's gathering and
        :meth:`compute_metrics`."""
        rank, world = get_dist_info()
        if world == 1 or self.dets_per_class or self.analysis or self.results_dir:
            return super().evaluate(size)
        # the sampler gives rank r the samples r, r + world, ...; those past ``size`` are its padding, which
        # mmengine's gathering drops too
        positions = [i * world + rank for i in range(len(self.results))]
        kept = [i for i, pos in enumerate(positions) if pos < size]
        gt = load_ground_truth(self.ann_file, self.protocol)
        payload = rank_part([self.results[i] for i in kept], [positions[i] for i in kept], self.ann_file,
                            self.iou_types, self.protocol, self.groups_file, self.boundary_dilation, rank, gt)
        payloads = collect_results([payload], world, self.collect_device,
                                   **({"tmpdir": self.collect_dir} if self.collect_device == "cpu" else {}))
        metrics = [None]
        if is_main_process():
            self.last_results = merge_rank_parts(payloads, self.ann_file, self.protocol, self.groups_file,
                                                 self.per_image, gt)
            flat = self._flat()
            metrics = [{"/".join((self.prefix, k)): v for k, v in flat.items()} if self.prefix else flat]
        broadcast_object_list(metrics)
        self.results.clear()
        return metrics[0]

    def _flat(self) -> Dict[str, float]:
        """The scalar metrics of ``last_results`` for mmengine's log."""
        flat = {}
        for mode, by_type in self.last_results.items():
            for iou_type in iou_types_of(by_type):
                metrics = by_type[iou_type]
                for name in ("AP", "AP50", "AP75", "APr", "APc", "APf"):
                    if name in metrics:
                        flat[f"{mode}/{iou_type}_{name}"] = round(float(metrics[name]), 4)
        return flat
