"""Reports render from small metrics fixtures; table numbers equal the JSON; figures are written; bad inputs exit 2."""
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from mec_cli.cli import app
from mec_cli.errors import MecError
from mec_cli.evaluation.api import SCHEMA
from mec_cli.ops.modes import BASELINE_MODE
from mec_cli.reporting.runs import load_runs
from mec_cli.reporting.tables import ablation_table, compare_table, stage_count_table

MODES = ["stage1", "stage2", "stage3", "mean_probs", "mean_probs_ga", "mean_logits", "mean_logits_ga", "sparse",
         "sparse_ga", "dynamic", "dynamic_ga"]


def _metrics(seed: float, mec: bool, stages: int = 3, lam=0.7, recipe="tiny", per_stage=True):
    modes = {}
    names = MODES if per_stage else MODES[3:]
    names = [f"stage{k + 1}" for k in range(stages)] * per_stage + names[3:] if per_stage else names
    for i, m in enumerate(names):
        base = 0.1 + 0.01 * i + seed
        modes[m] = {t: {"AP": base + (0.02 if t == "bbox" else 0), "AP50": base + 0.2, "APr": base / 3, "APc": base / 2,
                        "APf": base * 1.5, "AP_rare": base / 3, "AP_common": base / 2, "AP_frequent": base * 1.5}
                    for t in ("bbox", "segm")}
    return {"schema": SCHEMA, "protocol": "lvis", "recipe": recipe,
            "run": {"mec_loss": mec, "lam": lam if mec else None,
                                                                          "num_stages": stages},
            "groups": {"names": ["rare", "common", "frequent"]}, "modes": modes}


@pytest.fixture()
def runs(tmp_path):
    paths = {}
    for name, doc in {"base": _metrics(0.0, False, recipe="tiny_baseline"), "mec": _metrics(0.05, True),
                      "base4": _metrics(0.01, False, 4, recipe="b4"), "mec4": _metrics(0.07, True, 4, recipe="m4"),
                      "lam5": _metrics(0.03, True, lam=0.5), "lam9": _metrics(0.02, True, lam=0.9)}.items():
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps(doc))
        paths[name] = d
    return paths


def test_ablation_numbers_and_marks_come_from_the_json(runs):
    base, mec = load_runs([str(runs["base"]), str(runs["mec"])])
    t = ablation_table([base, mec])
    row = t.df[(t.df.run == "tiny") & (t.df["mode"] == "sparse_ga")].iloc[0]
    assert (row["Exp."], row["DI"], row["SI"], row["GA"]) == ("✓", "", "✓", "✓")
    assert row["mAP^m"] == round(100 * mec.doc["modes"]["sparse_ga"]["segm"]["AP"], 1)
    assert row["AP^m_r"] == round(100 * mec.doc["modes"]["sparse_ga"]["segm"]["APr"], 1)
    assert row["mAP"] == round(100 * mec.doc["modes"]["sparse_ga"]["bbox"]["AP"], 1)
    first = t.df.iloc[0]
    assert first["Exp."] == "" and first["mode"] == BASELINE_MODE == "mean_logits"  # one baseline definition
    assert any("baseline = mean_logits" in n for n in t.notes)
    best = t.best_rows()["mAP^m"]
    assert t.df.iloc[best[0]]["mAP^m"] == t.df["mAP^m"].max()
    other = ablation_table([base, mec], baseline_mode="mean_probs")
    assert list(other.df["mode"][:2]) == ["mean_probs", "mean_probs_ga"]
    assert any("baseline = mean_probs" in n for n in other.notes)


def test_ablation_paper_numbers_only_beside_the_paper_recipe(runs):
    base, mec = load_runs([str(runs["base"]), str(runs["mec"])])
    t = ablation_table([base, mec], reference=True)
    assert t.df["paper mAP^m"].isna().all()  # tiny runs: the paper has no numbers for them
    base.doc["recipe"], mec.doc["recipe"] = "cascade_r50_baseline", "cascade_r50"
    t = ablation_table([base, mec], reference=True)
    rows = t.df.set_index(["run", "mode"])  # labels stay the ones loaded: tiny_baseline, tiny
    assert rows.loc[("tiny_baseline", "mean_logits"), "paper mAP^m"] == 19.7
    assert pd.isna(rows.loc[("tiny_baseline", "mean_logits_ga"), "paper mAP^m"])  # no (-, -, -, GA) row in the paper
    assert rows.loc[("tiny", "mean_logits_ga"), "paper mAP^m"] == 21.3
    assert rows.loc[("tiny", "dynamic_ga"), "paper mAP^m"] == 22.3
    assert rows.loc[("tiny", "sparse_ga"), "paper mAP"] == 24.2
    assert pd.isna(rows.loc[("tiny_baseline", "dynamic"), "paper mAP^m"])  # the paper has no such row
    mec.doc["run"]["recipe_meta"] = {"dataset": "coco_lt"}
    assert pd.isna(ablation_table([mec], reference=True).df["paper mAP^m"]).all()  # Table 2(c) is LVIS


def test_compare_deltas_and_paper_reference(runs):
    base, mec = load_runs([str(runs["base"]), str(runs["mec"])])
    t = compare_table([base, mec], reference=True)
    b, m, d = t.df.iloc[0], t.df.iloc[1], t.df.iloc[2]
    assert b["AP"] == round(100 * base.doc["modes"]["mean_logits"]["bbox"]["AP"], 1)
    assert m["AP"] == round(100 * mec.doc["modes"]["dynamic_ga"]["bbox"]["AP"], 1)
    assert d["AP"] == pytest.approx(m["AP"] - b["AP"], abs=0.051)
    assert pd.isna(b["paper AP"])  # tiny is not in the paper
    mec.doc["recipe"] = "cascade_r50"
    assert compare_table([base, mec], reference=True).df.iloc[1]["paper AP"] == 25.0
    mec.doc["run"]["recipe_meta"] = {"dataset": "coco_lt"}  # the same recipe on COCO-LT: Table 2(b)
    assert compare_table([base, mec], reference=True).df.iloc[1]["paper AP"] == 17.1


def test_stage_count_table(runs):
    loaded = load_runs([str(runs[k]) for k in ("mec4", "base", "mec", "base4")])
    t = stage_count_table(loaded, reference=True)
    assert list(t.df["# of stages"]) == [3, 3, 4, 4] and list(t.df["model"]) == ["Baseline", "MEC", "Baseline", "MEC"]
    assert t.df["paper AP"].isna().all()  # keyed by recipe: these runs are not the paper's models
    for run, recipe in zip(loaded, ("cascade_r50_4stage", "cascade_r50_baseline", "cascade_r50",
                                    "cascade_r50_4stage_baseline")):
        run.doc["recipe"] = recipe
    assert list(stage_count_table(loaded, reference=True).df["paper AP"]) == [22.1, 25.0, 22.3, 26.1]


@pytest.mark.parametrize("fmt,needle", [("md", "| run |"), ("latex", "\\toprule"), ("csv", "run,mode,Exp.")])
def test_table_formats_via_cli(runs, tmp_path, fmt, needle):
    out = tmp_path / f"t.{fmt}"
    res = CliRunner().invoke(app, ["report", "ablation", str(runs["base"]), str(runs["mec"]), "--format", fmt, "--out",
                                   str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert needle in text
    value = round(100 * json.loads((runs["mec"] / "metrics.json").read_text())["modes"]["dynamic_ga"]["segm"]["AP"], 1)
    assert f"{value:.1f}" in text


def test_figures_are_written_and_not_empty(runs, tmp_path):
    cases = [["stages", str(runs["mec"]), "--baseline", str(runs["base"]), "--out", str(tmp_path / "s.png")],
             ["lambda", str(runs["lam5"]), str(runs["mec"]), str(runs["lam9"]), "--out", str(tmp_path / "l.png")],
             ["distribution", "lvis_v1", "coco2017", "--out", str(tmp_path / "d.png")]]
    for args in cases:
        res = CliRunner().invoke(app, ["report", *args])
        assert res.exit_code == 0, res.output
    for name in ("s.png", "s.svg", "s_vs_baseline.png", "l.png", "d.png", "d.svg"):
        assert (tmp_path / name).stat().st_size > 5000, name


def test_bad_inputs_exit_2_with_one_line(runs, tmp_path):
    wrong = tmp_path / "old.json"
    wrong.write_text(json.dumps({**_metrics(0, True), "schema": "mec.metrics/0"}))
    no_stages = tmp_path / "nostage.json"
    no_stages.write_text(json.dumps(_metrics(0, True, per_stage=False)))
    cases = [(["report", "ablation", str(tmp_path / "missing.json")], "missing.json"),
             (["report", "ablation", str(wrong)], "schema"),
             (["report", "stages", str(no_stages), "--out", str(tmp_path / "x.png")], "--per-stage"),
             (["report", "compare", str(runs["base"])], "pairs")]
    for args, needle in cases:
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.output, res.output
    assert not (tmp_path / "x.png").exists()


def _two_groupings(tmp_path, lvis=True):
    """A run whose LVIS APr differs from its groups.json AP_rare (LVIS counts images, groups.json instances)."""
    doc = _metrics(0.0, True)
    for m in doc["modes"].values():
        for t in m.values():
            t["AP_rare"], t["AP_common"], t["AP_frequent"] = 0.111, 0.222, 0.333
            t["APr"], t["APc"], t["APf"] = 0.444, 0.555, 0.666
            if not lvis:
                del t["APr"], t["APc"], t["APf"]
    doc["groups"] = {"names": ["rare", "common", "frequent"], "bins": [10, 100], "count_by": "instances"}
    path = tmp_path / ("lvis.json" if lvis else "nolvis.json")
    path.write_text(json.dumps(doc))
    return path


def test_group_columns_say_which_grouping_and_never_substitute(tmp_path):
    from mec_cli.reporting.tables import stages_frame

    run = load_runs([str(_two_groupings(tmp_path))])[0]
    lvis = compare_table([run, run], grouping="lvis")
    assert lvis.df.iloc[0]["APr"] == 44.4 and lvis.df.iloc[0]["AP^m_r"] == 44.4 and "AP_rare" not in lvis.df
    assert any("LVIS frequency" in n for n in lvis.notes)
    groups = compare_table([run, run], grouping="groups")
    assert groups.df.iloc[0]["AP_rare"] == 11.1 and groups.df.iloc[0]["AP^m_rare"] == 11.1 and "APr" not in groups.df
    assert any("groups.json" in n and "instances" in n for n in groups.notes)
    assert compare_table([run, run]).df.iloc[0]["APr"] == 44.4  # auto: LVIS frequency when every run has it
    assert stages_frame(run, grouping="groups").loc["stage 1", "rare"] == 11.1
    assert stages_frame(run, grouping="lvis").loc["stage 1", "rare"] == 44.4
    bare = load_runs([str(_two_groupings(tmp_path, lvis=False))])[0]
    assert compare_table([bare, bare]).df.iloc[0]["AP_rare"] == 11.1  # auto without LVIS frequency: groups.json
    with pytest.raises(MecError, match="no LVIS frequency"):
        compare_table([bare, bare], grouping="lvis")
    with pytest.raises(MecError, match="no LVIS frequency"):
        compare_table([run, bare], grouping="lvis")
    assert compare_table([run, bare]).df.iloc[1]["AP_rare"] == 11.1  # mixed runs: one grouping for every row


def test_stages_figure_axis_names_the_grouping(tmp_path, monkeypatch):
    from mec_cli.reporting import figures

    seen = []
    real = figures.stages_figure

    def spy(frame, title, metric, xlabel):
        seen.append((xlabel, frame.loc["stage 1", "rare"]))
        return real(frame, title, metric, xlabel)

    monkeypatch.setattr(figures, "stages_figure", spy)
    path = _two_groupings(tmp_path)
    for grouping, label, value in (("lvis", "LVIS frequency group (by training images)", 44.4),
                                   ("groups", "group of groups.json (by training instances)", 11.1)):
        res = CliRunner().invoke(app, ["report", "stages", str(path), "--grouping", grouping, "--out",
                                       str(tmp_path / f"{grouping}.png")])
        assert res.exit_code == 0, res.output
        assert seen[-1] == (label, value)
        assert label in res.output
