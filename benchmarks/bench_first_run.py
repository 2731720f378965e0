"""The first `mec eval --results` after set-up against the second, in a fresh install (issue 19).

A fresh install here is a copy of this tree (its tracked files and untracked ones git does not ignore: a clone
with your edits) in a temporary folder, imported through PYTHONPATH with the venv of the python running this
script, and an empty kernel cache of its own (XDG_CACHE_HOME in the temporary folder, NUMBA_CACHE_DIR unset), so
that nothing compiled before counts. PYTHONDONTWRITEBYTECODE is unset for the runs, as on a user's machine.
Each `mec eval` runs in a process of its own (wall time and peak RSS of that process).

1. ``cold``: no warm-up; the first run compiles numba's kernels, as every first run did before issue 19;
2. ``setup``: another fresh copy and cache; the set-up's last step, ``python -m mec_cli.evaluation.warmup``
   (timed), then ``--runs`` runs of ``mec eval --results``: the first after set-up, the second, ...;
3. ``relocated``: the set-up's copy copied to another folder (a new venv, container or read-only install of the
   same version; the user's kernel cache stays), and its first run;
4. ``baseline`` (``--baseline REF``, e.g. main): that commit of the repository, extracted with ``git archive``,
   with numba's own cache in its tree: its first and second run.

The issue's check: the first run after set-up takes at most 1.5 x the second plus 1 s.

    .venv/bin/python benchmarks/bench_first_run.py --images 1500 --dets 300 --baseline main \
        --out benchmarks/results/first_run.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_eval import REPO, copy_tree, install_env, make_workload, run_mec, warm_up  # noqa: E402  (not a package)


def extract_ref(dst: Path, ref: str, src: Path = REPO) -> Path:
    """Commit ``ref`` of the repository in ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(src), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--dets", type=int, default=300, help="detections per image")
    ap.add_argument("--runs", type=int, default=3, help="runs after set-up (the first, the second, ...)")
    ap.add_argument("--no-cold", action="store_true", help="skip the run without warm-up (it compiles: a minute)")
    ap.add_argument("--baseline", metavar="REF", help="also a commit from before issue 19, e.g. main")
    ap.add_argument("--root", type=Path, help="keep the workload here (default: a temporary folder)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.runs < 2:
        ap.error("--runs must be at least 2 (the first and the second run)")
    result: Dict = {"images": args.images, "dets_per_image": args.dets, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="mec-first-run-") as tmp:
        tmp = Path(tmp)
        root = args.root or tmp / "data"
        root.mkdir(parents=True, exist_ok=True)
        if not ((root / "gt.json").is_file() and (root / "dets.json").is_file()):
            n = make_workload(root, args.images, args.dets)
            print(f"workload: {args.images:,} images, {n:,} detections", flush=True)
        result["results_mib"] = round((root / "dets.json").stat().st_size / 2**20, 1)

        def show(label: str, row: Dict) -> None:
            print(f"{label:34s} {row['wall_s']:7.2f} s {row['peak_rss_mib']:7.0f} MiB", flush=True)

        if not args.no_cold:
            tree = copy_tree(tmp / "cold")
            env = install_env(tree, tmp / "cold-cache")
            result["cold"] = [run_mec(root, tree=tree, env=env) for _ in range(2)]
            show("no warm-up: first run", result["cold"][0])
            show("no warm-up: second run", result["cold"][1])
        tree = copy_tree(tmp / "install")
        env = install_env(tree, tmp / "cache")
        result["warmup_s"] = warm_up(tree, env)
        print(f"{'set-up warm-up':34s} {result['warmup_s']:7.2f} s", flush=True)
        result["after_setup"] = [run_mec(root, tree=tree, env=env) for _ in range(args.runs)]
        for k, row in enumerate(result["after_setup"]):
            show(f"after set-up: run {k + 1}", row)
        moved = tmp / "relocated"
        shutil.copytree(tree, moved)
        result["relocated_first"] = run_mec(root, tree=moved, env=install_env(moved, tmp / "cache"))
        show("relocated copy: first run", result["relocated_first"])
        if args.baseline:
            base = extract_ref(tmp / "baseline", args.baseline)
            env = install_env(base, tmp / "baseline-cache")
            result["baseline"] = {"ref": args.baseline, "runs": [run_mec(root, tree=base, env=env) for _ in range(2)]}
            show(f"{args.baseline}: first run", result["baseline"]["runs"][0])
            show(f"{args.baseline}: second run", result["baseline"]["runs"][1])
    first, second = (r["wall_s"] for r in result["after_setup"][:2])
    result["check"] = {"first_s": first, "second_s": second, "limit_s": round(1.5 * second + 1, 2),
                       "passes": first <= 1.5 * second + 1}
    print(f"check: first {first:.2f} s <= 1.5 x second + 1 s = {1.5 * second + 1:.2f} s: "
          f"{'yes' if result['check']['passes'] else 'NO'}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
