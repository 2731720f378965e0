"""Every command is documented with an example, listed in the README, and `mec --help` imports no torch or mm*."""
import json
import re
import subprocess
import sys
from pathlib import Path

from typer.main import get_command
from typer.testing import CliRunner

from mec_cli import __version__
from mec_cli.cli import _expand_optional_values, app

ROOT = Path(__file__).resolve().parents[2]


def _leaf_commands(cmd, prefix=()):
    if getattr(cmd, "commands", None):
        for name, sub in cmd.commands.items():
            yield from _leaf_commands(sub, prefix + (name,))
    else:
        yield prefix, cmd


def test_every_command_has_help_with_an_example_and_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    leaves = list(_leaf_commands(get_command(app)))
    assert len(leaves) >= 14
    for path, _ in leaves:
        res = CliRunner().invoke(app, [*path, "--help"])
        assert res.exit_code == 0, path
        assert "Example" in res.output, f"`mec {' '.join(path)} --help` has no example"
        assert re.search(r"mec " + re.escape(path[0]), readme), f"mec {path[0]} is not in the README"


def test_version_and_listing():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    res = CliRunner().invoke(app, ["--help"])
    for name in ("synth", "groups", "build-coco-lt", "recipes", "train", "eval", "report", "demo", "doctor"):
        assert name in res.output


def test_help_imports_no_torch_or_mm_packages():
    code = ("import sys\nfrom mec_cli.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'mmcv', 'mmdet', 'mmengine', 'lvis', 'pandas', 'matplotlib')]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("HEAVY []"), out[-500:]


def test_resume_alone_means_auto():
    assert _expand_optional_values(["train", "--resume", "--gpus", "0"]) == ["train", "--resume", "auto", "--gpus", "0"]
    assert _expand_optional_values(["train", "--resume"]) == ["train", "--resume", "auto"]
    assert _expand_optional_values(["train", "--resume", "x.pth"]) == ["train", "--resume", "x.pth"]


def test_cfg_options_take_several_pairs_as_in_mmdetection():
    argv = ["train", "--cfg-options", "a=1", "b.c=2", "--gpus", "0", "extra"]
    assert _expand_optional_values(argv) == ["train", "--cfg-options", "a=1", "--cfg-options", "b.c=2", "--gpus", "0",
                                             "extra"]


def test_doctor_reports_a_working_install():
    res = CliRunner().invoke(app, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    assert '"mmcv_ops": "ok"' in res.output


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and re.search(r"^make test$", ci, re.M)


def test_eval_table_fits_80_columns_with_whole_group_names(monkeypatch):
    import io

    from rich.console import Console

    import mec_cli.cli.eval as eval_cli

    buf = io.StringIO()
    monkeypatch.setattr("mec_cli.cli._common.console", Console(file=buf, width=80, highlight=False))
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AP_rare", "AP_common", "AP_frequent"]
    row = {k: 0.123 + i / 100 for i, k in enumerate(names)}
    eval_cli.print_metrics({"protocol": "lvis", "modes": {"mean_logits_ga": {"bbox": row, "segm": row}}})
    lines = buf.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if "mode" in line)
    assert {"rare", "common", "frequent"} <= set(header.split()) and "…" not in buf.getvalue()
    assert "mean_logits_ga" in buf.getvalue() and "12.3" in buf.getvalue()


def test_tables_into_a_log_or_pipe_are_never_cut(monkeypatch):
    import io

    from rich.console import Console

    from mec_cli.cli import _common

    buf = io.StringIO()
    monkeypatch.setattr(_common, "console", Console(file=buf, width=40, highlight=False))  # not a terminal
    table = _common.data_table("wide")
    for name in ("recipe", "model", "AP"):
        table.add_column(name)
    table.add_row("cascade_r101_4stage_baseline_coco_lt", "Hybrid Task Cascade without semantics", "12.345")
    _common.print_table(table)
    text = buf.getvalue()
    assert "…" not in text and "cascade_r101_4stage_baseline_coco_lt" in text and "12.345" in text
    assert "Hybrid Task Cascade without semantics" in text  # one line, not wrapped into the 40 columns


def test_the_console_entry_exits_quickly_with_its_output_whole_and_its_exit_code(tmp_path):
    """`python -m mec_cli.cli` (as the `mec` script) ends with os._exit after a command: a piped table arrives
    whole, an output file is complete, and exit codes (0, 2) come through."""
    from mec_cli.data.synth import SynthConfig, make_synthetic_dataset

    listing = subprocess.run([sys.executable, "-m", "mec_cli.cli", "recipes"], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    assert all(name in listing.stdout for name in ("tiny_baseline", "htc_r101_cos", "htc_r50 "))
    data = tmp_path / "d"
    make_synthetic_dataset(SynthConfig(out=data, seed=0, train_images=20, val_images=2, image_size=64))
    out = tmp_path / "g.json"
    res = subprocess.run([sys.executable, "-m", "mec_cli.cli", "groups", str(data / "annotations" /
                                                                            "lvis_v1_train.json"), "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text())["schema"].startswith("mec.groups")
    bad = subprocess.run([sys.executable, "-m", "mec_cli.cli", "groups", str(tmp_path / "missing.json")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len((bad.stdout + bad.stderr).strip().splitlines()) == 1, bad.stderr
