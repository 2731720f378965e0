"""A deterministic synthetic long-tailed instance-segmentation dataset in LVIS v1 format.

Each category is one (shape, colour) pair, so a detector can learn it from pixels. Training instance
counts fall geometrically from ``max_count`` to ``min_count`` across the categories, which puts several
categories in each of the instance-count groups [0,10), [10,100) and [100,inf) with the defaults.

Layout written under ``out``::

    train/000001.png ...           images
    val/000001.png ...
    annotations/lvis_v1_train.json LVIS v1 JSON (also loads as COCO)
    annotations/lvis_v1_val.json

Only numpy and OpenCV are used, and every random draw comes from one seeded generator, so the same
arguments give byte-identical files. Both are imported by the functions that draw: the CLI reads
:class:`SynthConfig`'s defaults at start-up, and `mec --help` stays free of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from mec_cli.errors import SEED_MAX, MecError, check_number
from mec_cli.io import check_output_dir, write_bytes_atomic, write_json_atomic

if TYPE_CHECKING:
    import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "pentagon", "hexagon", "star", "cross")
COLOURS = {  # BGR, far apart so that colour alone separates them
    "red": (40, 40, 220),
    "green": (60, 190, 60),
    "blue": (220, 90, 30),
    "yellow": (40, 220, 230),
    "magenta": (200, 60, 200),
    "cyan": (220, 220, 60),
}
MAX_CLASSES = len(SHAPES) * len(COLOURS)
MAX_IMAGE_SIZE = 8192  # a side of 8192 pixels is a 192 MiB canvas per image; larger ones only exhaust memory
MAX_IMAGES = 10_000_000  # per split: the annotations of every image are held in memory until they are written
URL_PREFIX = "http://images.cocodataset.org/"  # mmdet's LVISV1Dataset strips it from coco_url


@dataclass(frozen=True)
class SynthConfig:
    out: Path
    seed: int = 0
    num_classes: int = 24
    train_images: int = 600
    val_images: int = 150
    image_size: int = 160
    max_count: int = 1000
    min_count: int = 3

    def validate(self) -> None:
        check_number("seed", self.seed, 0, SEED_MAX, integer=True)
        if not 2 <= self.num_classes <= MAX_CLASSES:
            # names the flag: tests/data/test_synth.py pins "num-classes" in this library message
            raise MecError(f"--num-classes must be between 2 and {MAX_CLASSES} (shape x colour pairs), got "
                           f"{self.num_classes}")
        check_number("train_images", self.train_images, 1, MAX_IMAGES, integer=True)
        check_number("val_images", self.val_images, 1, MAX_IMAGES, integer=True)
        check_number("image_size", self.image_size, integer=True)
        if not 64 <= self.image_size <= MAX_IMAGE_SIZE:
            raise MecError(f"must be between 64 and {MAX_IMAGE_SIZE} pixels, got {self.image_size}",
                           option="image_size")
        if not 1 <= self.min_count <= self.max_count:
            raise MecError("instance counts need 1 <= min_count <= max_count")


def long_tail_counts(num_classes: int, max_count: int, min_count: int) -> List[int]:
    """Instance counts falling geometrically from ``max_count`` (class 0) to ``min_count`` (last class)."""
    ratio = (min_count / max_count) ** (1.0 / max(num_classes - 1, 1))
    return [max(min_count, int(round(max_count * ratio**i))) for i in range(num_classes)]


def category_table(num_classes: int) -> List[Tuple[str, str]]:
    """(shape, colour) of each category, interleaved so that neighbouring classes differ in both."""
    n_s, colours = len(SHAPES), list(COLOURS)
    pairs = [(SHAPES[i % n_s], colours[(i % n_s + i // n_s) % len(colours)]) for i in range(MAX_CLASSES)]
    return pairs[:num_classes]


def _shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Polygon (P, 2) in pixel coordinates for one shape of circumradius ``r``."""
    import numpy as np
    def regular(n: int, rot: float = 0.0) -> np.ndarray:
        t = rot + angle + np.arange(n) * 2 * math.pi / n
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)

    if shape == "circle":
        return regular(24)
    if shape == "square":
        return regular(4, math.pi / 4)
    if shape == "triangle":
        return regular(3, -math.pi / 2)
    if shape == "diamond":
        t = angle + np.arange(4) * math.pi / 2
        rad = np.array([r, 0.6 * r, r, 0.6 * r])
        return np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1)
    if shape == "pentagon":
        return regular(5, -math.pi / 2)
    if shape == "hexagon":
        return regular(6)
    if shape == "star":
        t = angle - math.pi / 2 + np.arange(10) * math.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        return np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1)
    if shape == "cross":
        a, b = r, 0.35 * r
        pts = np.array([(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b),
                        (-a, -b), (-b, -b)])
        c, s = math.cos(angle), math.sin(angle)
        rot = pts @ np.array([[c, s], [-s, c]])
        return rot + np.array([cx, cy])
    raise ValueError(shape)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured grey background: a smooth gradient plus blurred noise and faint stripes."""
    import cv2
    import numpy as np

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = 90 + 60 * (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy)
    noise = cv2.GaussianBlur(rng.normal(0, 25, (size, size)).astype(np.float32), (0, 0), 2.0)
    stripes = 8 * np.sin(2 * math.pi * (xx * rng.uniform(2, 8) + yy * rng.uniform(2, 8)))
    grey = np.clip(base + noise + stripes, 0, 255)
    tint = rng.uniform(0.85, 1.0, 3).astype(np.float32)
    return np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)


def _layout_images(counts: Sequence[int], num_images: int, rng: np.random.Generator) -> List[List[int]]:
    """Spread ``counts[c]`` instances of each class over ``num_images`` images.

    Returns the category index list of every image. Instances are shuffled and dealt so that every
    image gets at least one instance when there are enough of them.
    """
    import numpy as np
    labels = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(labels)
    per_image: List[List[int]] = [[] for _ in range(num_images)]
    # Deal the first num_images instances one per image, the rest at random.
    slots = np.concatenate([np.arange(min(num_images, len(labels))),
                            rng.integers(0, num_images, max(0, len(labels) - num_images))])
    for lab, slot in zip(labels.tolist(), slots.tolist()):
        per_image[slot].append(lab)
    return per_image


def _place(rng: np.random.Generator, size: int, n: int, tries: int = 60) -> List[Tuple[float, float, float]]:
    """Up to ``n`` non-overlapping (cx, cy, r) discs inside a ``size`` x ``size`` image."""
    placed: List[Tuple[float, float, float]] = []
    r_lo, r_hi = size * 0.07, size * 0.2
    for _ in range(n):
        for _ in range(tries):
            r = float(rng.uniform(r_lo, r_hi))
            cx, cy = (float(v) for v in rng.uniform(r + 1, size - r - 1, 2))
            if all((cx - x) ** 2 + (cy - y) ** 2 > (r + q + 2) ** 2 for x, y, q in placed):
                placed.append((cx, cy, r))
                break
            r_hi = max(r_lo, r_hi * 0.97)  # shrink when crowded
    return placed


def _split(cfg: SynthConfig, split: str, counts: Sequence[int], num_images: int, rng: np.random.Generator,
           categories: List[Dict], progress: Optional[Callable[[int], None]]) -> Dict:
    import cv2
    import numpy as np

    table = category_table(cfg.num_classes)
    size = cfg.image_size
    images, annotations = [], []
    ann_id = 1
    for img_idx, labels in enumerate(_layout_images(counts, num_images, rng)):
        img_id = img_idx + 1
        rel = f"{split}/{img_id:06d}.png"
        canvas = _background(rng, size)
        present = set()
        for lab, (cx, cy, r) in zip(labels, _place(rng, size, len(labels))):
            shape, colour = table[lab]
            poly = _shape_polygon(shape, cx, cy, r, float(rng.uniform(-0.3, 0.3)))
            poly = np.clip(poly, 0, size - 1)
            jitter = rng.integers(-15, 16, 3)
            bgr = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLOURS[colour], jitter))
            cv2.fillPoly(canvas, [np.round(poly).astype(np.int32)], bgr, lineType=cv2.LINE_8)
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            flat = [round(float(v), 2) for v in poly.reshape(-1)]
            area = 0.5 * abs(float(np.dot(poly[:, 0], np.roll(poly[:, 1], 1)) - np.dot(poly[:, 1],
                                                                                       np.roll(poly[:, 0], 1))))
            annotations.append({
                "id": ann_id, "image_id": img_id, "category_id": lab + 1,
                "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
                "area": round(area, 2), "segmentation": [flat], "iscrowd": 0,
            })
            present.add(lab + 1)
            ann_id += 1
        ok, png = cv2.imencode(".png", canvas)
        if not ok:
            raise MecError(f"could not encode {rel}")
        write_bytes_atomic(cfg.out / rel, png.tobytes())
        absent = [c for c in range(1, cfg.num_classes + 1) if c not in present]
        neg = sorted(int(c) for c in rng.choice(absent, size=min(len(absent), int(rng.integers(0, 4))),
                                                replace=False)) if absent else []
        # About one present category in ten is marked not exhaustively annotated, as in LVIS.
        not_exh = sorted(c for c in present if rng.random() < 0.1)
        images.append({
            "id": img_id, "width": size, "height": size, "file_name": rel,
            "coco_url": URL_PREFIX + rel, "license": 0, "flickr_url": "", "date_captured": "",
            "neg_category_ids": neg, "not_exhaustive_category_ids": not_exh,
        })
        if progress:
            progress(1)
    cats = _with_statistics(categories, annotations)
    return {"info": {"description": f"mec synthetic long-tailed dataset ({split})", "version": "1.0", "seed": cfg.seed},
            "licenses": [{"id": 0, "name": "CC0"}], "images": images, "annotations": annotations, "categories": cats}


def _with_statistics(categories: List[Dict], annotations: List[Dict]) -> List[Dict]:
    """Add LVIS's ``image_count``, ``instance_count`` and ``frequency`` to each category.

    LVIS assigns frequency from the number of training *images*: r for 1-10, c for 11-100, f above.
    """
    inst: Dict[int, int] = {}
    imgs: Dict[int, set] = {}
    for a in annotations:
        inst[a["category_id"]] = inst.get(a["category_id"], 0) + 1
        imgs.setdefault(a["category_id"], set()).add(a["image_id"])
    out = []
    for c in categories:
        n_img = len(imgs.get(c["id"], ()))
        freq = "r" if n_img <= 10 else ("c" if n_img <= 100 else "f")
        out.append({**c, "image_count": n_img, "instance_count": inst.get(c["id"], 0), "frequency": freq})
    return out


def make_synthetic_dataset(cfg: SynthConfig, progress: Optional[Callable[[int], None]] = None) -> Dict[str, Path]:
    """Write the dataset under ``cfg.out`` and return the paths of its two annotation files."""
    import numpy as np
    cfg.validate()
    check_output_dir(cfg.out)
    rng = np.random.default_rng(cfg.seed)
    counts = long_tail_counts(cfg.num_classes, cfg.max_count, cfg.min_count)
    val_counts = [max(3, int(round(0.15 * c))) for c in counts]
    categories = [
        {"id": i + 1, "name": f"{colour}_{shape}", "synset": f"{colour}_{shape}.n.01",
         "synonyms": [f"{colour}_{shape}"], "def": f"a {colour} {shape}"}
        for i, (shape, colour) in enumerate(category_table(cfg.num_classes))
    ]
    # Train statistics are the dataset's own (LVIS v1 val also carries the train statistics).
    train = _split(cfg, "train", counts, cfg.train_images, rng, categories, progress)
    val = _split(cfg, "val", val_counts, cfg.val_images, rng, categories, progress)
    val["categories"] = train["categories"]
    paths = {"train": cfg.out / "annotations" / "lvis_v1_train.json",
             "val": cfg.out / "annotations" / "lvis_v1_val.json"}
    write_json_atomic(paths["train"], train, indent=None)
    write_json_atomic(paths["val"], val, indent=None)
    return paths


def synthetic_coco_annotations(num_images: int, categories: Sequence[Dict], seed: int = 0, scale: float = 1.0) -> Dict:
    """A COCO-style annotation dict (no pixels) with the given per-category statistics.

    Each category ``c`` (with ``id``, ``name``, ``instance_count``, ``image_count``) gets about
    ``scale * instance_count`` instances spread over about ``scale * image_count`` random images, so
    per-image co-occurrence looks like a real dataset. Used by the COCO-LT tests and benchmark.
    """
    import numpy as np
    rng = np.random.default_rng(seed)
    rows: List[np.ndarray] = []
    cols: List[np.ndarray] = []
    for c in categories:
        n_inst = max(1, int(round(c["instance_count"] * scale)))
        n_img = int(np.clip(round(c.get("image_count", n_inst) * scale), 1, min(n_inst, num_images)))
        imgs = rng.choice(num_images, n_img, replace=False)
        extra = rng.integers(0, n_img, n_inst - n_img)
        rows.append(np.concatenate([imgs, imgs[extra]]))
        cols.append(np.full(n_inst, c["id"]))
    img_idx = np.concatenate(rows)
    cat_ids = np.concatenate(cols)
    order = np.argsort(img_idx, kind="stable")
    img_idx, cat_ids = img_idx[order], cat_ids[order]
    xy = rng.uniform(0, 500, (len(img_idx), 2)).round(1)
    wh = rng.uniform(2, 120, (len(img_idx), 2)).round(1)
    anns = [{"id": i + 1, "image_id": int(im) + 1, "category_id": int(cat),
             "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h), "iscrowd": 0}
            for i, (im, cat, (x, y), (w, h)) in enumerate(zip(img_idx.tolist(), cat_ids.tolist(), xy.tolist(),
                                                              wh.tolist()))]
    images = [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 640, "height": 480} for i in range(num_images)]
    cats = [{"id": c["id"], "name": c["name"], "supercategory": c.get("supercategory", "")} for c in categories]
    return {"info": {"description": "mec synthetic COCO-like annotations"}, "images": images, "annotations": anns,
            "categories": cats}
