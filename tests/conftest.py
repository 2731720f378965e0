"""Shared fixtures: the synthetic dataset is made once per session by mec_cli.data.synth."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mec_cli.data.synth import SynthConfig, make_synthetic_dataset


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """A small synthetic LVIS-format dataset (the demo's data at reduced size)."""
    root = tmp_path_factory.mktemp("synth")
    make_synthetic_dataset(SynthConfig(out=root, seed=0, train_images=120, val_images=30, image_size=128,
                                       max_count=300, min_count=3))
    return root


@pytest.fixture()
def write_json(tmp_path):
    def _write(name: str, obj) -> Path:
        p = tmp_path / name
        p.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
        return p

    return _write


class MecRun:
    """What one `mec ...` run through the real entry point (``mec_cli.cli.main``) printed and returned."""

    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    @property
    def lines(self):
        return [ln for ln in (self.out + self.err).splitlines() if ln.strip()]

    def one_error_line(self, code: int = 2) -> str:
        """Assert the run failed with ``code``, one line, no traceback; return that line."""
        text = self.out + self.err
        assert self.code == code, (self.code, text[-2000:])
        assert "Traceback" not in text and "Error:" not in text.replace("error:", ""), text[-2000:]
        assert len(self.lines) == 1, text[-2000:]
        return self.lines[0]


@pytest.fixture()
def run_mec(monkeypatch):
    """Run `mec ARGS` in this process through ``main()`` (as the console script does), capturing its output."""
    import contextlib
    import io
    import sys

    from mec_cli.cli import main

    def _run(*args) -> MecRun:
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "argv", ["mec", *map(str, args)])
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return MecRun(code, out.getvalue(), err.getvalue())

    return _run
