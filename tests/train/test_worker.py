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
