"""What a study is: its runs (a recipe plus overrides, repeated per seed) and the reports made from them.

A study comes from a built-in (:data:`BUILT_INS`: the runs each of the paper's artefacts needs, with the recipes
of ``recipes/``) or from a TOML file (:func:`load_toml`, format in :data:`TOML_HELP`). :func:`map_family` puts a
study onto the tiny CPU recipes (``--family tiny``); :meth:`StudySpec.expand` repeats every run per seed.

Importing this module is cheap (no torch, no mm*, no pandas): the CLI reads :class:`StudyOptions`' defaults.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mec_cli.errors import SEED_MAX, MecError, check_number

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # a run's label is also a folder name
FAMILIES = ("paper", "tiny")
REPORT_KINDS = ("compare", "ablation", "stage-count", "lambda", "models", "figures", "studies", "distribution")
LAMBDA_SWEEP = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass
class RunSpec:
    """One training and its evaluation: a recipe and what differs from it. ``name`` is the run's folder under
    ``runs/`` (the label, with ``-s<seed>`` when the study has seed folders), set by :meth:`StudySpec.expand`."""

    label: str
    recipe: str
    seed: int = 0
    dataset: Optional[str] = None
    schedule: Optional[str] = None
    lam: Optional[float] = None  # the multi-expert loss's lambda (MEC recipes)
    tau: Optional[float] = None  # the dynamic ensemble's temperature, at test time
    bins: Optional[List[int]] = None  # the frequency-group edges (MEC recipes)
    max_iters: Optional[int] = None
    cfg_options: Dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def settings(self) -> Dict[str, Any]:
        """What decides this run's result (its folder name aside)."""
        out = asdict(self)
        out.pop("name")
        return out

    def train_cfg_options(self) -> Dict[str, Any]:
        """The config overrides of the training (lambda and bins are keys of the MEC head's config)."""
        out: Dict[str, Any] = {}
        if self.lam is not None:
            out["model.roi_head.mec.lam"] = float(self.lam)
        if self.bins is not None:
            out["model.roi_head.mec.bins"] = list(self.bins)
        out.update(self.cfg_options)
        return out


@dataclass
class ReportSpec:
    """A report of the study: ``kind`` (one of :data:`REPORT_KINDS`) over the runs of ``labels`` (for ``compare``
    and ``figures``: pairs, baseline then MEC), with the paper's numbers beside them where ``reference``."""

    kind: str
    labels: List[str]
    reference: bool = False
    mode: Optional[str] = None  # the scoring mode of MEC runs, where the paper used another than dynamic_ga


@dataclass
class StudySpec:
    name: str
    description: str
    runs: List[RunSpec]  # one per label; the seeds repeat them
    reports: List[ReportSpec]
    seeds: List[int] = field(default_factory=lambda: [0])
    source: str = "built-in"
    notes: List[str] = field(default_factory=list)
    seed_folders: bool = True  # runs/<label>-s<seed>; False (the demo, one seed): runs/<label>
    analysis: bool = False  # evaluations also store errors and calibration per group (the `studies` report)

    def expand(self) -> List[RunSpec]:
        """Every run for every seed, seed by seed (all runs of the first seed, then the next)."""
        if not self.seed_folders and len(self.seeds) != 1:
            raise MecError(f"study {self.name} keeps one run folder per label and takes one seed, got "
                           f"{len(self.seeds)}", option="seeds")
        return [replace(run, seed=seed, name=f"{run.label}-s{seed}" if self.seed_folders else run.label,
                        cfg_options=dict(run.cfg_options), bins=list(run.bins) if run.bins else None)
                for seed in self.seeds for run in self.runs]

    def pairs(self) -> List[Tuple[str, str]]:
        """The (baseline, MEC) label pairs of the study's comparisons."""
        out: List[Tuple[str, str]] = []
        for rep in self.reports:
            if rep.kind in ("compare", "figures"):
                out += [p for p in zip(rep.labels[::2], rep.labels[1::2]) if p not in out]
        return out

    def summary(self) -> Dict[str, Any]:
        return {"name": self.name, "description": self.description, "source": self.source, "seeds": self.seeds,
                "runs": [r.settings() for r in self.runs], "reports": [asdict(r) for r in self.reports],
                "notes": self.notes, "seed_folders": self.seed_folders, "analysis": self.analysis}


@dataclass
class StudyOptions:
    """What `mec study run` passes to every run, and how the study runs. ``pretrained`` holds weight files: a
    plain path for every backbone, or ``BACKBONE=PATH`` (``R-50=resnet50.pth``) for the recipes with that
    backbone (``mec recipes`` lists them)."""

    out: Optional[str] = None
    data_root: Optional[str] = None
    gpus: int = 1
    procs: int = 1
    nodes: int = 1
    max_iters: Optional[int] = None
    pretrained: List[str] = field(default_factory=list)
    no_pretrained: bool = False
    groups: Optional[str] = None
    cfg_options: Dict[str, Any] = field(default_factory=dict)
    amp: bool = False
    auto_scale_lr: bool = False
    seeds: Optional[int] = None  # K: seeds 0..K-1 instead of the study's own
    family: str = "paper"
    retry_failed: bool = False
    dry_run: bool = False
    slurm: bool = False
    partition: Optional[str] = None
    time: Optional[str] = None
    qos: Optional[str] = None
    cpus_per_task: int = 5
    max_parallel: Optional[int] = None  # Slurm: at most this many array tasks at once

    def validate(self) -> None:
        check_number("gpus", self.gpus, 0, integer=True)
        check_number("procs", self.procs, 1, integer=True)
        check_number("nodes", self.nodes, 1, integer=True)
        check_number("max_iters", self.max_iters, 1, integer=True)
        check_number("seeds", self.seeds, 1, 1000, integer=True)
        check_number("cpus_per_task", self.cpus_per_task, 1, integer=True)
        check_number("max_parallel", self.max_parallel, 1, integer=True)
        if self.family not in FAMILIES:
            raise MecError(f"must be one of {', '.join(FAMILIES)}, got {self.family!r}", option="family")
        if self.no_pretrained and self.pretrained:
            raise MecError("and `pretrained` exclude each other", option="no_pretrained")
        if self.slurm and not self.partition:
            raise MecError("is needed to run a study through Slurm", option="partition")
        if self.slurm and self.gpus < 1:
            raise MecError("must be at least 1 with `slurm` (the jobs ask for GPUs)", option="gpus")
        if self.nodes > 1 and not self.slurm:
            raise MecError("above 1 needs `slurm` (a study on this machine runs its trainings here, one after the "
                           "other)", option="nodes")
        for item in self.pretrained:
            if "=" in item and not item.split("=", 1)[0].strip():
                raise MecError(f"takes PATH or BACKBONE=PATH, got {item!r}", option="pretrained")

    def pretrained_for(self, backbone: str) -> Optional[str]:
        """The weights file for a recipe's backbone (``R-50-FPN``): the ``R-50=`` entry, else a plain path."""
        plain = None
        for item in self.pretrained:
            key, sep, path = item.partition("=")
            if not sep:
                plain = item
            elif backbone.lower() == key.strip().lower() or backbone.lower().startswith(key.strip().lower() + "-"):
                return path
        return plain


# ---- the built-in studies -------------------------------------------------------------------------------------
def _pairs(names: Sequence[Tuple[str, str]], **fields) -> List[RunSpec]:
    return [RunSpec(label=n, recipe=n, **fields) for pair in names for n in pair]


TABLE1_PAIRS = [("cascade_r50_baseline", "cascade_r50"), ("cascade_r101_baseline", "cascade_r101"),
                ("htc_r50_baseline", "htc_r50"), ("htc_r101_baseline", "htc_r101"),
                ("cascade_r50_seesaw_baseline", "cascade_r50_seesaw"), ("cascade_r50_cos_baseline", "cascade_r50_cos")]
STAGES_RUNS = ["cascade_r50_baseline", "cascade_r50", "cascade_r50_4stage_baseline", "cascade_r50_4stage"]


def table1() -> StudySpec:
    labels = [n for pair in TABLE1_PAIRS for n in pair]
    return StudySpec(
        "table1", "Table 1: each model without and with MEC on LVIS v1, rows (1) to (12): Cascade R-CNN and HTC with "
        "R-50 and R-101, seesaw loss and the cosine classifier (rows (13)-(14), De-confound, have no recipe here)",
        _pairs(TABLE1_PAIRS), [ReportSpec("compare", labels, reference=True)])


def table2c() -> StudySpec:
    labels = ["cascade_r50_baseline", "cascade_r50"]
    return StudySpec(
        "table2c", "Table 2(c): the ablation of MEC's parts on Cascade R50 (LVIS v1): a baseline and an MEC training, "
        "each scored with and without the dynamic/sparse ensembles and group alignment from one inference pass",
        _pairs([tuple(labels)]), [ReportSpec("ablation", labels, reference=True), ReportSpec("compare", labels)])


def lambda_sweep() -> StudySpec:
    runs = [RunSpec(label=f"lambda{lam:g}", recipe="cascade_r50", lam=lam) for lam in LAMBDA_SWEEP]
    return StudySpec(
        "lambda", "Figure 4: MEC on Cascade R50 (LVIS v1) trained with the multi-expert loss's lambda at "
        f"{', '.join(f'{v:g}' for v in LAMBDA_SWEEP)}, scored with the dynamic ensemble as the paper's Section 5.4 "
        "does. The paper does not print the lambdas of its figure; this sweep brackets its choice, 0.7",
        runs, [ReportSpec("lambda", [r.label for r in runs], mode="dynamic")])


def stages() -> StudySpec:
    return StudySpec(
        "stages", "Table 3: Cascade R50 (LVIS v1) with 3 and 4 stages, each without and with MEC (4 stages: 4 groups, "
        "bins 10/100/500)", [RunSpec(label=n, recipe=n) for n in STAGES_RUNS],
        [ReportSpec("stage-count", list(STAGES_RUNS), reference=True), ReportSpec("compare", list(STAGES_RUNS))])


def coco_lt() -> StudySpec:
    names = ("cascade_r50_baseline", "cascade_r50_seesaw_baseline", "cascade_r50")
    runs = [RunSpec(label=n, recipe=n, dataset="coco_lt") for n in names]
    return StudySpec(
        "coco-lt", "Table 2(b): Cascade R50 on COCO-LT (12-epoch schedule): the baseline, seesaw loss and MEC (the "
        "table's EQ loss row has no recipe here)", runs,
        [ReportSpec("models", [r.label for r in runs], reference=True),
         ReportSpec("compare", ["cascade_r50_baseline", "cascade_r50"])])


def demo() -> StudySpec:
    labels = ["tiny_baseline", "tiny"]
    return StudySpec(
        "demo", "the tiny baseline and the tiny MEC recipe on the synthetic data, every report that applies",
        [RunSpec(label=n, recipe=n) for n in labels],
        [ReportSpec("ablation", labels), ReportSpec("compare", labels), ReportSpec("figures", labels),
         ReportSpec("studies", labels), ReportSpec("distribution", [])],
        seed_folders=False, analysis=True)


BUILT_INS = {"table1": table1, "table2c": table2c, "lambda": lambda_sweep, "stages": stages, "coco-lt": coco_lt,
             "demo": demo}


# ---- TOML study files -----------------------------------------------------------------------------------------
TOML_HELP = """\
name = "my-study"                    # optional (default: the file's name)
description = "what it shows"        # optional
seeds = 3                            # optional: 3 means seeds 0, 1, 2; or a list [0, 7]
reports = ["compare", "lambda"]      # optional: compare, ablation, stage-count, lambda, models, figures, studies

[defaults]                           # optional: fields every run gets unless it sets its own
dataset = "coco_lt"

[[runs]]
label = "base"                       # the run's name in reports and folders (default: the recipe)
recipe = "cascade_r50_baseline"

[[runs]]
label = "mec-lam0.5"
recipe = "cascade_r50"
baseline = "base"                    # pairs it with a baseline run: the compare table and its intervals
lam = 0.5                            # also: tau, bins = [10, 100], schedule, dataset, max_iters
cfg_options = { "optim_wrapper.optimizer.lr" = 0.01 }
"""
RUN_KEYS = {"label", "recipe", "dataset", "schedule", "lam", "tau", "bins", "max_iters", "cfg_options", "baseline"}
TOP_KEYS = {"name", "description", "seeds", "reports", "defaults", "runs"}


def _read_toml(path: Path) -> Dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # Python 3.9 and 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise MecError("reading a TOML study needs Python 3.11 or later, or the `tomli` package "
                           "(pip install tomli)", path) from None
    if not path.is_file():
        raise MecError("study file not found (a built-in study is one of "
                       f"{', '.join(n for n in BUILT_INS if n != 'demo')})", path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise MecError(f"malformed TOML: {e}", path) from None
    except UnicodeDecodeError:
        raise MecError("not a UTF-8 text file", path) from None


KIND_WORDS = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a table"}


def _check_type(value, kinds, what: str, path: Path) -> None:
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        words = "a number" if float in kinds else " or ".join(KIND_WORDS[k] for k in kinds)
        raise MecError(f"{what} must be {words}, got {value!r}", path)


def load_toml(path) -> StudySpec:
    """A study from a TOML file (format: :data:`TOML_HELP`); every mistake is one MecError naming the file."""
    path = Path(path)
    doc = _read_toml(path)
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise MecError(f"unknown key {unknown[0]!r} (a study file has {', '.join(sorted(TOP_KEYS))})", path)
    name = doc.get("name", path.stem)
    _check_type(name, (str,), "name", path)
    description = doc.get("description", f"the runs of {path.name}")
    _check_type(description, (str,), "description", path)
    defaults = doc.get("defaults", {})
    _check_type(defaults, (dict,), "[defaults]", path)
    raw_runs = doc.get("runs")
    if not raw_runs:
        raise MecError("names no runs: add [[runs]] tables with at least a recipe", path)
    _check_type(raw_runs, (list,), "runs", path)
    runs: List[RunSpec] = []
    baselines: Dict[str, str] = {}
    for i, raw in enumerate(raw_runs):
        _check_type(raw, (dict,), f"runs[{i}]", path)
        entry = {**defaults, **raw}
        where = f"run {entry.get('label', entry.get('recipe', i))!r}"
        bad = sorted(set(entry) - RUN_KEYS)
        if bad:
            raise MecError(f"{where}: unknown key {bad[0]!r} (a run takes {', '.join(sorted(RUN_KEYS))})", path)
        if "recipe" not in entry:
            raise MecError(f"{where}: names no recipe", path)
        run = _run_from(entry, where, path)
        if "baseline" in entry:
            _check_type(entry["baseline"], (str,), f"{where}: baseline", path)
            baselines[run.label] = entry["baseline"]
        runs.append(run)
    labels = [r.label for r in runs]
    dup = next((x for x in labels if labels.count(x) > 1), None)
    if dup:
        raise MecError(f"two runs have the label {dup!r}: give each its own `label`", path)
    for mec, base in baselines.items():
        if base not in labels:
            raise MecError(f"run {mec!r}: its baseline {base!r} is not a run of this study", path)
    seeds = _seeds(doc.get("seeds", 1), path)
    reports = _reports(doc.get("reports"), runs, baselines, path)
    spec = StudySpec(name, description, runs, reports, seeds=seeds, source=str(path))
    check_spec(spec, path)
    return spec


def _run_from(entry: Dict[str, Any], where: str, path: Path) -> RunSpec:
    recipe = entry["recipe"]
    _check_type(recipe, (str,), f"{where}: recipe", path)
    label = entry.get("label", recipe)
    _check_type(label, (str,), f"{where}: label", path)
    for key, kinds in (("dataset", (str,)), ("schedule", (str,)), ("lam", (int, float)), ("tau", (int, float)),
                       ("bins", (list,)), ("max_iters", (int,)), ("cfg_options", (dict,))):
        if key in entry:
            _check_type(entry[key], kinds, f"{where}: {key}", path)
    bins = entry.get("bins")
    if bins is not None:
        from mec_cli.data.groups import parse_bins

        try:
            bins = parse_bins(bins)
        except MecError as e:
            raise MecError(f"{where}: bins {e.message}", path) from None
    return RunSpec(label=label, recipe=recipe, dataset=entry.get("dataset"), schedule=entry.get("schedule"),
                   lam=entry.get("lam"), tau=entry.get("tau"), bins=bins, max_iters=entry.get("max_iters"),
                   cfg_options=dict(entry.get("cfg_options", {})))


def _seeds(value, path) -> List[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 1000:
            raise MecError(f"seeds must be a count from 1 to 1000 or a list of seeds, got {value}", path)
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and
                                                 0 <= s <= SEED_MAX for s in value) and len(set(value)) == len(value):
        return list(value)
    raise MecError(f"seeds must be a count or a list of distinct seeds in [0, {SEED_MAX}], got {value!r}", path)


def _reports(value, runs: List[RunSpec], baselines: Dict[str, str], path) -> List[ReportSpec]:
    labels = [r.label for r in runs]
    pairs = [x for mec, base in baselines.items() for x in (base, mec)]
    if value is None:
        value = ["models"] + (["compare"] if pairs else []) + (
            ["lambda"] if sum(r.lam is not None for r in runs) >= 2 else [])
    _check_type(value, (list,), "reports", path)
    out = []
    for kind in value:
        if kind not in REPORT_KINDS or kind == "distribution":
            raise MecError(f"unknown report {kind!r}; choose among {', '.join(REPORT_KINDS[:-1])}", path)
        if kind in ("compare", "figures"):
            if not pairs:
                raise MecError(f"report {kind!r} compares runs with their baselines: give an MEC run "
                               "`baseline = \"<label>\"`", path)
            out.append(ReportSpec(kind, list(pairs)))
        elif kind == "lambda":
            out.append(ReportSpec(kind, [r.label for r in runs if r.lam is not None] or labels))
        elif kind == "studies":
            out.append(ReportSpec(kind, list(pairs[:2])))
        else:
            out.append(ReportSpec(kind, list(labels)))
    return out


def check_spec(spec: StudySpec, source=None) -> None:
    """Refuse what cannot run before anything starts: unknown recipes, lambda or bins on a baseline, bad labels."""
    from mec_cli.recipes import resolve_recipe

    for run in spec.runs:
        if not LABEL.match(run.label):
            raise MecError(f"run label {run.label!r} must be letters, digits and . _ + - (it names a folder)", source)
        try:
            info = resolve_recipe(run.recipe)
        except MecError as e:
            raise MecError(f"run {run.label!r}: {e.message}", source) from None
        for key in ("lam", "bins"):
            if getattr(run, key) is not None and not info.mec:
                raise MecError(f"run {run.label!r}: `{key}` applies to MEC recipes; {info.name} is a baseline", source)
        if run.lam is not None and not 0 <= run.lam <= 1:
            raise MecError(f"run {run.label!r}: lam must be in [0, 1], got {run.lam}", source)
        if run.tau is not None and not run.tau > 0:
            raise MecError(f"run {run.label!r}: tau must be > 0, got {run.tau}", source)
        if run.max_iters is not None and run.max_iters < 1:
            raise MecError(f"run {run.label!r}: max_iters must be >= 1, got {run.max_iters}", source)
    labels = {r.label for r in spec.runs}
    for rep in spec.reports:
        missing = [x for x in rep.labels if x not in labels]
        if missing:
            raise MecError(f"report {rep.kind!r} names {missing[0]!r}, which is not a run of the study", source)


def resolve_study(name_or_file: str) -> StudySpec:
    """A built-in study by name, else a TOML study file."""
    if name_or_file in BUILT_INS:
        spec = BUILT_INS[name_or_file]()
        check_spec(spec)
        return spec
    path = Path(name_or_file)
    if path.suffix != ".toml" and not path.exists():
        import difflib

        close = difflib.get_close_matches(name_or_file, list(BUILT_INS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise MecError(f"unknown study {name_or_file!r}: give a built-in ({', '.join(BUILT_INS)}) or a .toml "
                       f"file{hint}")
    return load_toml(path)


# ---- families -------------------------------------------------------------------------------------------------
def tiny_recipe(recipe: str) -> str:
    """The tiny CPU recipe that stands in for ``recipe``: same stage count, same MEC or baseline head."""
    from mec_cli.recipes import resolve_recipe

    info = resolve_recipe(recipe)
    if info.dataset == "synth":
        return info.name
    stem = "tiny_4stage" if info.stages == 4 else "tiny"
    return stem if info.mec else f"{stem}_baseline"


def map_family(spec: StudySpec, family: str) -> StudySpec:
    """``spec`` on the recipes of ``family``: 'paper' leaves it as it is; 'tiny' puts each run on the tiny recipe
    of the same stage count and head (on the synthetic data, with the tiny CPU schedule), and runs that become the
    same run are made once (the reports then name the one run)."""
    if family == "paper":
        return spec
    if family != "tiny":
        raise MecError(f"must be one of {', '.join(FAMILIES)}, got {family!r}", option="family")
    runs: List[RunSpec] = []
    rename: Dict[str, str] = {}
    notes = list(spec.notes)
    for run in spec.runs:
        recipe = tiny_recipe(run.recipe)
        label = recipe if run.label == run.recipe else run.label
        mapped = replace(run, label=label, recipe=recipe, dataset=None, schedule=None,
                         cfg_options=dict(run.cfg_options))
        same = next((r for r in runs if r.settings() == {**mapped.settings(), "label": r.label}), None)
        if same is not None:
            rename[run.label] = same.label
            notes.append(f"{run.label} -> {recipe}: the same run as {same.label} on the tiny recipes, made once")
            continue
        rename[run.label] = label
        dropped = [f"{k} {getattr(run, k)}" for k in ("dataset", "schedule") if getattr(run, k)]
        if recipe != run.recipe or dropped:
            notes.append(f"{run.label} -> {recipe}" + (f" ({label})" if label != recipe else "") +
                         (f", without its {' and '.join(dropped)} (the tiny recipes train on the synthetic data with "
                          "their own schedule)" if dropped else ""))
        runs.append(mapped)
    reports = []
    for rep in spec.reports:
        labels = [rename.get(x, x) for x in rep.labels]
        if rep.kind in ("compare", "figures", "studies"):
            pairs = list(dict.fromkeys(zip(labels[::2], labels[1::2])))
            labels = [x for p in pairs for x in p]
        else:
            labels = list(dict.fromkeys(labels))
        reports.append(replace(rep, labels=labels, reference=False))
    moved = len(notes) > len(spec.notes)
    return replace(spec, runs=runs, reports=reports, notes=notes,
                   description=spec.description + (" (on the tiny CPU recipes: --family tiny)" if moved else ""))


def build_spec(study: str, opts: StudyOptions) -> StudySpec:
    """The study to run: resolved, put on ``opts.family``, with ``opts.seeds`` seeds when given."""
    spec = map_family(resolve_study(study), opts.family)
    if opts.seeds is not None:
        spec = replace(spec, seeds=list(range(opts.seeds)))
    return spec
