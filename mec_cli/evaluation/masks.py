"""The masks of a results file and of the ground truth, checked before anything decodes them
(:mod:`mec_cli.data.masks` states the rules; this module applies them at evaluation speed).

Compressed counts are checked by :func:`mec_cli.data.masks.rle_string_check` compiled with numba, straight from the
results file's bytes (JSON escapes read in place), so millions of masks cost one pass over their counts; list counts
and polygons, rare in results files, are checked in Python, one record at a time.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from mec_cli.data import masks as rules
from mec_cli.errors import MecError
from mec_cli.evaluation.compiled import njit

# a kernel like the others (the ahead-of-time build holds it; the JIT's copy of this module sees numba's dispatcher)
rle_string_check = njit(cache=True, nogil=True)(rules.rle_string_check)

_SIZE_MISMATCH, _SIZE_BAD = 101, 102


@njit(cache=True, nogil=True)
def _check_string_rles(buf, rows, counts_span, counts_escaped, rle_size, image_hw, max_pixels):
    """Check the compressed RLEs of records ``rows`` (their counts at ``counts_span`` in ``buf``; ``image_hw[j]`` the
    image size of ``rows[j]``, 0 where unknown). Returns (j, problem, byte) of the first bad one, or (-1, 0, 0)."""
    for j in range(rows.shape[0]):
        i = rows[j]
        h, w = rle_size[i, 0], rle_size[i, 1]
        ih, iw = image_hw[j, 0], image_hw[j, 1]
        if ih > 0 and iw > 0 and (h != ih or w != iw):
            return j, _SIZE_MISMATCH, 0
        if h <= 0 or w <= 0 or h > max_pixels or w > max_pixels or h * w > max_pixels:
            return j, _SIZE_BAD, 0
        code, pos, _, _ = rle_string_check(buf, counts_span[i, 0], counts_span[i, 1], counts_escaped[i], h * w)
        if code != 0:
            return j, code, pos
    return -1, 0, 0


def _image_sizes(image_ids: np.ndarray, image_size: Dict[int, Tuple]) -> np.ndarray:
    """(n, 2) int64 (height, width) of each image id, 0 where the annotations do not give it (or lack the image)."""
    known = [(i, h, w) for i, (h, w) in image_size.items() if h and w]
    out = np.zeros((len(image_ids), 2), np.int64)
    if not known or not len(image_ids):
        return out
    table = np.array(sorted(known), np.int64)
    at = np.clip(np.searchsorted(table[:, 0], image_ids), 0, len(table) - 1)
    hit = table[at, 0] == image_ids
    out[hit] = table[at[hit], 1:]
    return out


def _hw(row) -> Optional[Tuple[int, int]]:
    return (int(row[0]), int(row[1])) if row[0] > 0 and row[1] > 0 else None


def check_results_masks(arrays, buf, image_size: Dict[int, Tuple], source: str) -> None:
    """Check every segmentation of a scanned results file (:func:`mec_cli.evaluation.jsonscan.read_results_file`)
    against :mod:`mec_cli.data.masks`' rules, with ``image_size`` the annotations' image id -> (height, width); the
    first problem is one MecError naming the record."""
    from mec_cli.evaluation.engine import KIND_POLYGONS, KIND_RLE, KIND_RLE_LIST  # noqa: PLC0415  (engine imports this)

    kinds = arrays.segm_kind
    if not len(kinds) or not kinds.any():
        return
    rows = np.flatnonzero(kinds == KIND_RLE)
    if rows.size:
        sizes = _image_sizes(arrays.image_id[rows], image_size)
        data = np.frombuffer(buf, np.uint8) if not isinstance(buf, np.ndarray) else buf
        j, code, pos = _check_string_rles(data, rows, arrays.counts_span, arrays.counts_escaped, arrays.rle_size,
                                          sizes, rules.RLE_MAX_PIXELS)
        if j >= 0:
            i = int(rows[j])
            h, w = (int(v) for v in arrays.rle_size[i])
            if code in (_SIZE_MISMATCH, _SIZE_BAD):
                what = rules.rle_size_problem(h, w, _hw(sizes[j])) or f"RLE size [{h}, {w}] is not usable"
            else:
                char = bytes(data[pos:pos + 1]).decode("latin-1") if code == rules.RLE_ALPHABET else None
                what = rules.rle_string_message(int(code), h, w, char)
            raise MecError(f"record {i} (image id {int(arrays.image_id[i])}): 'segmentation' {what}", source)
    rows = np.flatnonzero((kinds == KIND_RLE_LIST) | (kinds == KIND_POLYGONS))
    if rows.size:
        sizes = _image_sizes(arrays.image_id[rows], image_size)
        for j, i in enumerate(rows.tolist()):
            seg = arrays.segmentation(buf, i)
            hw = _hw(sizes[j])
            if kinds[i] == KIND_RLE_LIST:
                what = rules.rle_problem(seg["size"], seg["counts"], hw, rle_string_check)
            else:
                what = rules.polygon_problem(seg, *hw) if hw else None
            if what:
                raise MecError(f"record {i} (image id {int(arrays.image_id[i])}): 'segmentation' {what}", source)


def check_segmentation(seg, image_hw: Optional[Tuple]) -> Optional[str]:
    """What is wrong with one segmentation as pycocotools reads it (an RLE dict or polygons), or None; polygons are
    checked only where the image size is known (they cannot be rasterised without it)."""
    if isinstance(seg, dict):
        return rules.rle_problem(seg["size"], seg["counts"], image_hw, rle_string_check)
    if image_hw and image_hw[0] and image_hw[1]:
        return rules.polygon_problem(seg, image_hw[0], image_hw[1])
    return None
