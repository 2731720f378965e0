"""The COCO / LVIS annotation file as a typed schema: the one definition every reader of such a file validates against.

msgspec decodes a file straight into these structs in C, checking every type, range and required key as it goes
(ten times faster than ``json`` plus Python checks); :func:`read_dataset` then checks what a schema cannot
(duplicate ids, references to unknown images and categories, box sizes) with numpy. Every problem is one
:class:`~mec_cli.errors.MecError` naming the file, the record (with its id) and the field.

What is refused and what is read as is:

* refused: a missing required key (``id``; ``image_id``, ``category_id`` and ``bbox`` of an annotation; ``name`` of a
  category), a value of the wrong JSON type (a string id, a null coordinate), an id outside 64 bits, a duplicate id,
  an annotation of an unknown image or category, a box that is not 4 finite numbers or has a non-positive width or
  height, a negative or infinite area, an ``iscrowd``/``ignore`` other than 0/1 (``true``/``false`` read as 1/0, as
  pycocotools reads them), an LVIS ``frequency`` other than r/c/f, a non-positive image size, a negative count,
  ``neg_category_ids``/``not_exhaustive_category_ids`` naming unknown categories, malformed JSON (NaN included);
* read as is: unknown keys (kept by the commands that copy records, such as ``build-coco-lt``), a missing ``area``
  (the box's w*h, as the reference tools' results loaders use), missing LVIS fields (then the file is a COCO file).

Segmentations are checked with the rest (polygons: lists of at least 3 x, y pairs; RLE: ``size`` [h, w] and
``counts`` a string or a list of non-negative integers, and then as pycocotools reads them, by
:func:`mec_cli.data.masks.rle_problem`: the alphabet, runs adding up to h * w, the image's size), except by
:func:`read_dataset` with ``lazy_segmentation``, which keeps each one's raw JSON and leaves the check to the
evaluation that rasterises it (box evaluation never looks at them, as lvis-api's and pycocotools' box evaluation
does not). Polygons are bounded (:func:`mec_cli.data.masks.polygon_problem`) only where they are rasterised.

The file itself is read by :func:`mec_cli.io.read_input_bytes`: a regular file, UTF-8 (a bad byte is named by its
offset).
"""
from __future__ import annotations

import re
from typing import Annotated, List, Literal, Optional, Union

import msgspec
import numpy as np
from msgspec import UNSET, Meta, UnsetType

from mec_cli.data.masks import rle_problem
from mec_cli.errors import MecError
from mec_cli.io import read_json_bytes as read_raw

Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
Count = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Size = Annotated[int, Meta(gt=0, le=2**31 - 1)]
Flag = Union[bool, Literal[0, 1]]
Number = float
Box = Annotated[List[Number], Meta(min_length=4, max_length=4)]
Polygon = Annotated[List[Number], Meta(min_length=6)]


class RLE(msgspec.Struct, forbid_unknown_fields=False):
    size: Annotated[List[Count], Meta(min_length=2, max_length=2)]
    counts: Union[str, List[Count]]


Segmentation = Union[Annotated[List[Polygon], Meta(min_length=1)], RLE]


# Optional keys may be absent; when present they must hold a value (null is refused, not read as absent).
class Image(msgspec.Struct, forbid_unknown_fields=False):
    id: Int64
    width: Union[Size, UnsetType] = UNSET
    height: Union[Size, UnsetType] = UNSET
    neg_category_ids: Union[List[Int64], UnsetType] = UNSET
    not_exhaustive_category_ids: Union[List[Int64], UnsetType] = UNSET


class Category(msgspec.Struct, forbid_unknown_fields=False):
    id: Int64
    name: str
    frequency: Union[Literal["r", "c", "f"], UnsetType] = UNSET
    instance_count: Union[Count, UnsetType] = UNSET
    image_count: Union[Count, UnsetType] = UNSET


class Annotation(msgspec.Struct, forbid_unknown_fields=False):
    id: Int64
    image_id: Int64
    category_id: Int64
    bbox: Box
    area: Union[Annotated[float, Meta(ge=0)], UnsetType] = UNSET
    iscrowd: Flag = 0
    ignore: Flag = 0
    segmentation: Union[Segmentation, UnsetType] = UNSET


class LazyAnnotation(Annotation, forbid_unknown_fields=False):
    segmentation: msgspec.Raw = msgspec.Raw()  # kept as raw JSON; see the module docstring


class _Absent(list):
    """The value of a top-level list the file lacks: empty like ``[]``, but told apart from a ``[]`` in the file
    (a second pass over the bytes for the keys cost 0.05 s on LVIS-sized files)."""


class Dataset(msgspec.Struct, forbid_unknown_fields=False):
    categories: List[Category]
    images: List[Image] = msgspec.field(default_factory=_Absent)
    annotations: List[Annotation] = msgspec.field(default_factory=_Absent)


class LazyDataset(Dataset, forbid_unknown_fields=False):
    annotations: List[LazyAnnotation] = msgspec.field(default_factory=_Absent)


_EXPECTED = re.compile(r"Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`(?: - at `\$(?P<at>[^`]*)`)?")
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`(?: - at `\$(?P<at>[^`]*)`)?")
_AT = re.compile(r" - at `\$(?P<at>[^`]*)`")
_WANT = {"int": "an integer", "float": "a number", "str": "a string", "array": "a list", "object": "an object",
         "null": "null", "bool": "true or false"}


def _value_at(raw: bytes, at: str):
    """The JSON value at a msgspec path such as ``.annotations[3].bbox`` (read on the error path only)."""
    try:
        node = msgspec.json.decode(raw)
        for name, index in re.findall(r"\.([A-Za-z_]\w*)|\[(\d+)\]", at):
            node = node[name] if name else node[int(index)]
        return node
    except Exception:
        return None


def _record_label(raw: bytes, at: str) -> str:
    """``annotations[3] (id 7).bbox[2]`` for a msgspec path, naming the record by its id (read on the error path)."""
    m = re.match(r"\.(images|annotations|categories)\[(\d+)\](.*)", at or "")
    if not m:
        return (at or "").lstrip(".") or "the top level"
    key, idx, rest = m.group(1), int(m.group(2)), m.group(3)
    try:
        rec = msgspec.json.decode(raw)[key][idx]
        ident = f" (id {rec['id']})" if isinstance(rec, dict) and "id" in rec and isinstance(rec["id"], int) else ""
    except Exception:  # the label is a courtesy; the message stands without it
        ident = ""
    return f"{key}[{idx}]{ident}{rest}"


def _line_column(raw: bytes, byte: int):
    line = raw.count(b"\n", 0, byte) + 1
    return line, byte - (raw.rfind(b"\n", 0, byte) + 1) + 1


def _message(err: Exception, raw: bytes) -> str:
    """msgspec's error in the words of the rest of mec."""
    text = str(err)
    if not isinstance(err, msgspec.ValidationError):  # (a ValidationError is a DecodeError too)
        byte = re.search(r"byte (\d+)", text)
        where = " at line {} column {}".format(*_line_column(raw, int(byte.group(1)))) if byte else ""
        what = text.split(": ", 1)[-1].split(" (byte")[0]
        return f"malformed JSON{where}: {what}"
    missing = _MISSING.search(text)
    if missing:
        label = _record_label(raw, missing.group("at") or "")
        return f"{label} is missing key '{missing.group('field')}'" if label != "the top level" else \
            f"missing top-level key '{missing.group('field')}'"
    at = _AT.search(text)
    if at and re.search(r"\.bbox(\[\d+\])?$", at.group("at")):
        box_at = re.sub(r"\[\d+\]$", "", at.group("at"))
        return (f"{_record_label(raw, box_at.rsplit('.bbox', 1)[0])} has a bbox that is not [x, y, w, h] of 4 finite "
                f"numbers: {_value_at(raw, box_at)!r}")
    expected = _EXPECTED.search(text)
    if expected:
        want, got = expected.group("want"), expected.group("got")
        if not expected.group("at"):
            return f"expected a JSON object with keys images, annotations, categories, got {_WANT.get(got, got)}"
        label = _record_label(raw, expected.group("at"))
        return f"{label}: expected {_WANT.get(want, want)}, got {_WANT.get(got, got)}"
    what = _AT.sub("", text)
    what = what.replace("Expected `int` >= -9223372036854775808", "not a 64-bit integer").replace(
        "Expected `int` <= 9223372036854775807", "not a 64-bit integer")
    return f"{_record_label(raw, at.group('at')) if at else 'the file'}: {what[0].lower() + what[1:]}"


def decode_dataset(raw: bytes, path, lazy_segmentation: bool = False) -> Dataset:
    """Decode and type-check a COCO/LVIS annotation file (see the module docstring)."""
    try:
        return msgspec.json.decode(raw, type=LazyDataset if lazy_segmentation else Dataset)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise MecError(_message(e, raw), path) from None
    except RecursionError:
        raise MecError("JSON nested too deeply to read", path) from None


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


ANNOTATION_COLUMNS = np.dtype([("id", np.int64), ("image_id", np.int64), ("category_id", np.int64),
                               ("bbox", np.float64, (4,)), ("area", np.float64), ("has_area", np.bool_),
                               ("iscrowd", np.bool_), ("ignore", np.bool_)])


def annotation_columns(anns) -> np.ndarray:
    """The annotations' scalar fields as one structured array (:data:`ANNOTATION_COLUMNS`), read in one pass; area
    0 where the record has none (``has_area`` False)."""
    return np.fromiter(((a.id, a.image_id, a.category_id, a.bbox, 0.0 if a.area is UNSET else a.area,
                         a.area is not UNSET, a.iscrowd, a.ignore) for a in anns), ANNOTATION_COLUMNS, len(anns))


def check_references(ds: Dataset, path, require_annotations: bool = True,
                     columns: Optional[np.ndarray] = None) -> None:
    """What the types cannot say: unique ids, known images and categories, boxes with a positive size.
    ``columns``: :func:`annotation_columns` of the annotations, when the caller has them."""
    for key in ("images", "annotations") if require_annotations else ():
        if type(getattr(ds, key)) is _Absent:
            raise MecError(f"missing top-level key '{key}'", path)
    img_ids = np.fromiter((i.id for i in ds.images), np.int64, len(ds.images))
    cat_ids = np.fromiter((c.id for c in ds.categories), np.int64, len(ds.categories))
    anns = ds.annotations
    cols = annotation_columns(anns) if columns is None else columns
    ann_ids = cols["id"]
    for what, ids in (("image", img_ids), ("category", cat_ids), ("annotation", ann_ids)):
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise MecError(f"duplicate {what} id {int(uniq[_first(counts > 1)])}", path)
    for field in ("neg_category_ids", "not_exhaustive_category_ids"):
        lists = [getattr(im, field) for im in ds.images]
        listed = [ids for ids in lists if ids is not UNSET and ids]
        if listed:
            flat = np.fromiter((c for ids in listed for c in ids), np.int64)
            bad = ~np.isin(flat, cat_ids)
            if bad.any():
                cat = int(flat[_first(bad)])
                im = next(im for im, ids in zip(ds.images, lists) if ids is not UNSET and cat in ids)
                raise MecError(f"image id {im.id} lists unknown category id {cat} in {field}", path)
    if not anns:
        return
    for field, ids, known in (("image", cols["image_id"], img_ids), ("category", cols["category_id"], cat_ids)):
        bad = ~np.isin(ids, known)
        if bad.any():
            i = _first(bad)
            raise MecError(f"annotation id {int(ann_ids[i])} points at unknown {field} id {int(ids[i])}", path)
    boxes = cols["bbox"]
    bad = ~np.isfinite(boxes).all(1)
    if bad.any():
        i = _first(bad)
        raise MecError(f"annotation id {int(ann_ids[i])} has a bbox that is not [x, y, w, h] of 4 finite numbers: "
                       f"{anns[i].bbox}", path)
    bad = ~((boxes[:, 2] > 0) & (boxes[:, 3] > 0))
    if bad.any():
        i = _first(bad)
        raise MecError(f"annotation id {int(ann_ids[i])} has a non-positive box size (w={anns[i].bbox[2]}, "
                       f"h={anns[i].bbox[3]})", path)
    odd = next((a for a in anns if isinstance(a.segmentation, list) and any(len(p) % 2 for p in a.segmentation)), None)
    if odd is not None:
        raise MecError(f"annotation id {odd.id}: a segmentation polygon must be a list of x, y pairs (an even "
                       "count)", path)
    rles = [a for a in anns if isinstance(a.segmentation, RLE)]
    if rles:  # the masks pycocotools would decode (mec_cli.data.masks); polygons are checked where rasterised
        sizes = {im.id: (None if im.height is UNSET else im.height, None if im.width is UNSET else im.width)
                 for im in ds.images}
        for a in rles:
            problem = rle_problem(a.segmentation.size, a.segmentation.counts, sizes.get(a.image_id))
            if problem:
                raise MecError(f"annotation id {a.id}: segmentation {problem}", path)
    areas = cols["area"]
    if not np.isfinite(areas).all():
        i = _first(~np.isfinite(areas))
        raise MecError(f"annotation id {int(ann_ids[i])} has area {anns[i].area}, not a finite number >= 0", path)


def read_dataset(path, require_annotations: bool = True, lazy_segmentation: bool = False, raw: Optional[bytes] = None):
    """Read and validate an annotation file into typed structs (:class:`Dataset`); one MecError on any problem."""
    raw = read_raw(path) if raw is None else raw
    ds = decode_dataset(raw, path, lazy_segmentation)
    check_references(ds, path, require_annotations)
    return ds
