"""The one check of mask segmentations, as pycocotools reads them, before anything decodes or rasterises one.

pycocotools trusts its inputs: ``rleFrString`` reads any byte as a 6-bit digit, ``rleDecode`` writes as many
pixels as the counts add up to (past the end of the mask when they add up to more), and ``rleFrPoly`` walks every
pixel of every polygon edge, however far outside the image. A crafted results file could therefore hang an
evaluation or corrupt memory. Every RLE and polygon is checked here first:

* an RLE's ``size`` [h, w] is positive, at most :data:`RLE_MAX_PIXELS` pixels, and equal to its image's
  [height, width] where the annotations give it;
* compressed counts (a string) use pycocotools' alphabet (``'0'`` to ``'o'``, 64 digits), no number runs over
  :data:`RLE_MAX_CHARS` characters or past the end of the string, every run is >= 0 once the delta coding is
  undone, and the runs add up to exactly h * w;
* uncompressed counts (a list of integers >= 0) add up to exactly h * w;
* every polygon point lies within one image size of the image (x in [-w, 2w], y in [-h, 2h]), which bounds the
  work of rasterising it.

:func:`rle_string_check` reads compressed counts exactly as ``rleFrString`` does; it is plain Python that numba
also compiles (:mod:`mec_cli.evaluation.masks` checks millions of detections' masks with it), so both readers
share one definition. **Decision:** masks are limited to 2**29 pixels (a 23,170-pixel square): every run and
delta then fits the 30 bits that 6 characters hold, the range in which pycocotools' 32-bit shifts are exact.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import numpy as np

RLE_MAX_PIXELS = 1 << 29
RLE_MAX_CHARS = 6

# the problems rle_string_check reports
RLE_OK, RLE_ALPHABET, RLE_TRUNCATED, RLE_LONG, RLE_NEGATIVE, RLE_OVER, RLE_SHORT = 0, 1, 2, 3, 4, 5, 6


def rle_string_check(buf, s, e, escaped, total):
    """Read the compressed RLE counts ``buf[s:e]`` as pycocotools' ``rleFrString`` does, checking them on the way.

    ``buf``: bytes, or a uint8 array (under numba); ``escaped``: ``buf`` holds the string as JSON text, whose
    backslash escapes are read as ``json.loads`` would (``\\\\`` is the alphabet's backslash); ``total``: h * w.
    Returns ``(problem, position, runs, area)``: a problem code (``RLE_OK`` when none), the byte where it was
    found, the number of runs read and the mask's area (the sum of the odd runs, as ``rleArea``). Stops at the
    first problem, so the work is bounded by the string's length whatever it holds.
    """
    m = 0
    p = s
    acc = 0
    area = 0
    prev1 = 0
    prev2 = 0
    while p < e:
        x = 0
        k = 0
        start = p
        more = True
        while more:
            if p >= e:
                return RLE_TRUNCATED, start, m, area
            c = int(buf[p])
            step = 1
            if escaped and c == 92:  # a JSON escape (validated JSON: it is complete)
                c2 = int(buf[p + 1])
                step = 2
                if c2 == 92:
                    c = 92
                elif c2 == 117:  # \uXXXX (4 hex digits, checked by the JSON reader)
                    c = 0
                    for t in range(4):
                        d = int(buf[p + 2 + t])
                        c = c * 16 + (d - 48 if d <= 57 else (d - 55 if d <= 70 else d - 87))
                    step = 6
                else:
                    c = -1  # \" \/ \b \f \n \r \t: none is in the alphabet
            c -= 48
            if c < 0 or c > 63:
                return RLE_ALPHABET, p, m, area
            if k == RLE_MAX_CHARS:
                return RLE_LONG, start, m, area
            x |= (c & 0x1F) << (5 * k)
            more = (c & 0x20) != 0
            p += step
            k += 1
            if not more and (c & 0x10) != 0:
                x |= -1 << (5 * k)
        if m > 2:
            x += prev2
        if x < 0:
            return RLE_NEGATIVE, start, m, area
        acc += x
        if acc > total:
            return RLE_OVER, start, m, area
        if m % 2 == 1:
            area += x
        prev2 = prev1
        prev1 = x
        m += 1
    if acc != total:
        return RLE_SHORT, e, m, area
    return RLE_OK, e, m, area


def rle_string_message(problem: int, h: int, w: int, char: Optional[str] = None) -> str:
    """The words for a problem code of :func:`rle_string_check` (``char``: the character outside the alphabet)."""
    size = f"its size {h}x{w} = {h * w} pixels"
    return {
        RLE_ALPHABET: f"RLE counts hold {char!r}, outside pycocotools' alphabet ('0' to 'o')",
        RLE_TRUNCATED: "RLE counts end inside a number",
        RLE_LONG: f"RLE counts hold a number of more than {RLE_MAX_CHARS} characters (masks are at most 2**29 "
                  "pixels)",
        RLE_NEGATIVE: "RLE counts decode to a negative run",
        RLE_OVER: f"RLE counts add up to more than {size}",
        RLE_SHORT: f"RLE counts add up to less than {size}",
    }.get(problem, "malformed RLE counts")


def rle_size_problem(h, w, image_hw: Optional[Tuple] = None) -> Optional[str]:
    """What is wrong with an RLE's ``size`` [h, w] (None when nothing): its image's (height, width) when known."""
    if image_hw is not None and image_hw[0] and image_hw[1] and (h, w) != (image_hw[0], image_hw[1]):
        return f"RLE size [{h}, {w}] differs from its image's [height, width] [{image_hw[0]}, {image_hw[1]}]"
    if h <= 0 or w <= 0:
        return f"RLE size [{h}, {w}] is not positive"
    if h * w > RLE_MAX_PIXELS:
        return f"RLE size [{h}, {w}] is over 2**29 pixels"
    return None


def rle_problem(size: Sequence[int], counts, image_hw: Optional[Tuple] = None,
                string_check: Callable = rle_string_check) -> Optional[str]:
    """What keeps an RLE (``size``, ``counts`` a str, bytes or list of ints >= 0) from being read as it claims, or
    None; ``image_hw`` is its image's (height, width) where known. ``string_check``: :func:`rle_string_check` or
    its numba compilation (:mod:`mec_cli.evaluation.masks`)."""
    h, w = int(size[0]), int(size[1])
    problem = rle_size_problem(h, w, image_hw)
    if problem:
        return problem
    if isinstance(counts, (list, tuple)):
        total = sum(counts)
        if total != h * w:
            return f"RLE counts add up to {total}, not its size {h}x{w} = {h * w} pixels"
        return None
    raw = counts.encode("utf-8", "surrogatepass") if isinstance(counts, str) else bytes(counts)
    code, pos, _, _ = string_check(raw if string_check is rle_string_check else _as_array(raw), 0, len(raw), False,
                                   h * w)
    if code != RLE_OK:
        char = raw[pos:pos + 1].decode("latin-1") if code == RLE_ALPHABET else None
        return rle_string_message(code, h, w, char)
    return None


def _as_array(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, np.uint8)


def polygon_problem(polygons: Sequence[Sequence[float]], h, w) -> Optional[str]:
    """What keeps polygons from being rasterised at (``h``, ``w``) with bounded work (a point more than one image
    size outside the image), or None."""
    for i, poly in enumerate(polygons):
        xs, ys = poly[0::2], poly[1::2]
        if xs and (min(xs) < -w or max(xs) > 2 * w or min(ys) < -h or max(ys) > 2 * h):
            return (f"polygon {i} has a point more than one image size outside its {w}x{h} image (x in [{-w}, "
                    f"{2 * w}], y in [{-h}, {2 * h}])")
    return None
