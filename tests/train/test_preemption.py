"""Preemption: SIGTERM stops training cleanly with a checkpoint, kills never leave a damaged checkpoint in use,
--resume continues from the newest complete one (or says which are damaged), and every command ends cleanly on
SIGTERM.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mec_cli.compat import allow_mmengine_checkpoints, check_checkpoint

pytestmark = pytest.mark.slow
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _train_args(data, work, iters, *extra):
    return [sys.executable, "-m", "mec_cli.cli", "train", "--recipe", "tiny_baseline", "--gpus", "0", "--data-root",
            str(data),
            "--work-dir", str(work), "--max-iters", str(iters), "--seed", "0", "--cfg-options", "log_level=WARNING",
            *extra]


def _wait_for(proc, log: Path, needle: str, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if needle in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared")


def _load(path):
    allow_mmengine_checkpoints()
    return torch.load(path, map_location="cpu")


def _no_temporaries(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]


def test_sigterm_stops_after_the_iteration_with_a_checkpoint_and_resume_finishes_like_an_uninterrupted_run(synth_data,
                                                                                                           tmp_path):
    straight = subprocess.run(_train_args(synth_data, tmp_path / "straight", 8), capture_output=True, text=True,
                              env=ENV, timeout=900)
    assert straight.returncode == 0, straight.stderr[-3000:]

    work, log = tmp_path / "stopped", tmp_path / "stopped.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(_train_args(synth_data, work, 8), stdout=f, stderr=subprocess.STDOUT, env=ENV)
    _wait_for(proc, log, "train iter 3/8")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=600) == 143
    text = log.read_text()
    assert "stopped by SIGTERM after iteration" in text and "--resume" in text and "Traceback" not in text
    step = int(text.split("stopped by SIGTERM after iteration ")[1].split(";")[0])
    assert 3 <= step < 8
    saved = work / f"iter_{step}.pth"
    check_checkpoint(saved)
    assert Path((work / "last_checkpoint").read_text().strip()).name == saved.name
    assert _load(saved)["meta"]["iter"] == step
    _no_temporaries(work)

    resumed = subprocess.run(_train_args(synth_data, work, 8, "--resume"), capture_output=True, text=True, env=ENV,
                             timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _load(tmp_path / "straight" / "iter_8.pth"), _load(work / "iter_8.pth")
    assert a["meta"]["iter"] == b["meta"]["iter"] == 8
    # the schedule went on where it stopped: same LR and scheduler position as the uninterrupted run
    assert a["optimizer"]["param_groups"][0]["lr"] == pytest.approx(b["optimizer"]["param_groups"][0]["lr"])
    assert [s["last_step"] for s in a["param_schedulers"]] == [s["last_step"] for s in b["param_schedulers"]]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    # and the same weights: the data order is replayed, and the random state comes back from the checkpoint
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_kills_at_any_moment_never_leave_a_damaged_checkpoint_in_use(synth_data, tmp_path):
    """SIGKILL at different moments of a run that saves every iteration: whatever is on disk is complete."""
    work = tmp_path / "w"
    args = _train_args(synth_data, work, 10, "default_hooks.checkpoint.interval=1")
    for delay in (1.5, 0.9, 2.3):
        log = tmp_path / f"kill{delay}.log"
        with open(log, "w") as f:
            proc = subprocess.Popen(args + ["--resume"], stdout=f, stderr=subprocess.STDOUT, env=ENV,
                                    start_new_session=True)
        _wait_for(proc, log, "train iter")  # training has started: checkpoints are being written
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for ckpt in work.glob("iter_*.pth"):
            check_checkpoint(ckpt)  # a kill during a save leaves only a temporary file, never a truncated iter_N.pth
        named = Path((work / "last_checkpoint").read_text().strip())
        assert named.name in {p.name for p in work.glob("iter_*.pth")}
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, env=ENV, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _load(work / "iter_10.pth")["meta"]["iter"] == 10


def test_resume_skips_a_damaged_checkpoint_and_never_silently_starts_over(synth_data, tmp_path, run_mec):
    work = tmp_path / "w"
    ok = subprocess.run(_train_args(synth_data, work, 2, "default_hooks.checkpoint.interval=1"), capture_output=True,
                        text=True, env=ENV, timeout=900)
    assert ok.returncode == 0, ok.stderr[-3000:]
    good = (work / "iter_2.pth").read_bytes()
    (work / "iter_3.pth").write_bytes(good[: len(good) // 3])  # what a kill during mmengine's own save would leave
    (work / "last_checkpoint").write_text(str(work / "iter_3.pth"))
    res = run_mec("train", "--recipe", "tiny_baseline", "--gpus", "0", "--data-root", synth_data, "--work-dir", work,
                  "--max-iters", "2", "--resume", "--dry-run")
    assert res.code == 0
    text = " ".join(res.out.split())
    assert "skipping a damaged checkpoint" in text and "iter_3.pth" in text
    assert f"load_from = '{work / 'iter_2.pth'}'" in res.out
    (work / "iter_2.pth").write_bytes(good[:100])
    (work / "iter_1.pth").write_bytes(b"")
    line = run_mec("train", "--recipe", "tiny_baseline", "--gpus", "0", "--data-root", synth_data, "--work-dir", work,
                   "--max-iters", "2", "--resume", "--dry-run").one_error_line()
    assert "nothing complete to resume from" in line and "iter_3.pth" in line and "iter_1.pth" in line


def test_an_atomic_checkpoint_save_that_fails_changes_nothing(tmp_path):
    """MECCheckpointHook: a save that dies half-way leaves the old checkpoints and last_checkpoint untouched."""
    from types import SimpleNamespace

    from mmengine.logging import MessageHub

    from mec_cli.hooks import MECCheckpointHook

    for step in (1, 2):
        (tmp_path / f"iter_{step}.pth").write_bytes(b"complete checkpoint")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_2.pth"))

    def dies_half_way(out_dir, filename, *args, **kwargs):
        (Path(out_dir) / filename).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    from collections import deque

    from mmengine.fileio import get_file_backend

    hook = MECCheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=2)
    runner = SimpleNamespace(work_dir=str(tmp_path), message_hub=MessageHub.get_instance("mec-test-ckpt"), iter=2,
                             epoch=0, save_checkpoint=dies_half_way)
    hook.out_dir, hook.file_backend, hook.keep_ckpt_ids = str(tmp_path), get_file_backend(str(tmp_path)), deque([1, 2])
    with pytest.raises(OSError):
        hook._save_checkpoint_with_step(runner, 3, dict(iter=3))
    assert sorted(p.name for p in tmp_path.glob("iter_*.pth")) == ["iter_1.pth", "iter_2.pth"]
    assert (tmp_path / "iter_1.pth").read_bytes() == b"complete checkpoint"  # not removed before the new one exists
    assert (tmp_path / "last_checkpoint").read_text() == str(tmp_path / "iter_2.pth")


def test_sigterm_ends_a_command_with_a_message_and_no_temporary_files(tmp_path):
    out = tmp_path / "synth"
    log = tmp_path / "synth.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "mec_cli.cli", "synth", "--out", str(out), "--train-images",
                                 "20000"],
                                stdout=f, stderr=subprocess.STDOUT, env=ENV)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "train").is_dir():
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    text = log.read_text()
    assert "terminated (SIGTERM)" in text and "Traceback" not in text
    assert not (out / "annotations").exists()  # the annotation files come last and were never started
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]
