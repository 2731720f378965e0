"""The worker process ends its process group itself (not at interpreter shutdown)."""
import subprocess
import sys
import textwrap


def test_worker_destroys_its_process_group_before_exit(tmp_path):
    # In a child process: a one-rank gloo group, then the worker's teardown; the group must be gone.
    code = textwrap.dedent("""
        import torch.distributed as dist
        from mec_cli.worker import _close_process_group
        dist.init_process_group("gloo", init_method="file://%s", rank=0, world_size=1)
        assert dist.is_initialized()
        _close_process_group()
        assert not dist.is_initialized()
        _close_process_group()  # a second call, or a run without a group, is a no-op
        print("closed")
    """ % (tmp_path / "store"))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("closed")


def test_a_second_runner_in_one_process_gets_its_own_visualizer(synth_data, tmp_path):
    # mmengine shares a Visualizer per name across the process; a second Runner once reused the first one's,
    # writing into (or failing on, once deleted) the first run's log dir.
    import shutil

    from mec_cli import training
    from mec_cli.worker import _runner

    runners = []
    for name in ("a", "b"):
        run = training.prepare_training(training.TrainOptions(recipe="tiny_baseline", gpus=0, data_root=str(synth_data),
                                                              work_dir=str(tmp_path / name)))
        runners.append(_runner(str(training.write_run_files(run)), "none"))
        if name == "a":
            shutil.rmtree(tmp_path / "a")  # a finished evaluation's temporary work dir is removed
    first, second = runners
    assert first.visualizer is not second.visualizer
    assert str(second.visualizer._vis_backends["LocalVisBackend"]._save_dir).startswith(str(tmp_path / "b"))
    assert list((tmp_path / "b").glob("*/vis_data/config.py"))
