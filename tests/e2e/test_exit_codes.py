"""The exit policy (explorer/cli/main.py): an internal error is 3 with its traceback logged, a full disk 4
in one line, SIGTERM stops a sweep as Ctrl-C does (130) and keeps what finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from explorer.store.results_db import SQLiteStore
from tests.conftest import ROOT, TOY_TARGET, sweep_stopped_midway


def test_an_internal_error_in_a_sweep_is_exit_3_with_its_traceback_logged(conv_add_relu_onnx, tmp_path, monkeypatch,
                                                                          capsys):
    from explorer.cli.main import main
    from explorer.sweep import sweep

    def broken(*_args, **_kwargs):
        raise RuntimeError("injected: scoring lost its way")

    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sweep, "_score", broken)
    code = main(["sweep", str(conv_add_relu_onnx), "--targets", TOY_TARGET, "--strategies", "fused", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1, err
    assert err[0].startswith("explorer: internal error (a bug, not your input): RuntimeError: injected")
    log = Path(err[0].rsplit("the traceback is in ", 1)[1])
    assert log.parent == tmp_path / "cache" / "logs"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in broken" in text and "command: explorer sweep" in text


def test_a_bad_input_is_still_exit_2(capsys):
    from explorer.cli.main import main

    assert main(["sweep", "mlp", "--strategies", "turbo", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("explorer: error: unknown strategy 'turbo'")


def test_sigterm_mid_sweep_stops_it_as_ctrl_c_does_and_keeps_the_finished_rows(conv_add_relu_onnx, tmp_path):
    proc, _, _, _ = sweep_stopped_midway(conv_add_relu_onnx, tmp_path, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True)
    proc.send_signal(signal.SIGTERM)  # the sweep's own process only, as a service manager stops it
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; finished variants" in err and "Traceback" not in err
    stored = SQLiteStore(tmp_path / "out" / "results.sqlite")
    kept = stored.counts()[0]
    stored.close()
    assert kept >= 2


def _mount_tiny(folder: Path, size: str) -> bool:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def test_a_full_disk_is_one_line_naming_the_file_and_exit_4(tmp_path):
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tiny(disk, "1m"):
        pytest.skip("needs root to mount a 1 MB tmpfs (CI runs as root)")
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "EXPLORER_CACHE": str(disk / "cache")}
        # resnet18's prepared ONNX file (45 MB) does not fit the 1 MB disk
        done = subprocess.run([sys.executable, "-m", "explorer.cli", "sweep", "resnet18", "--targets", "cpu",
                               "--strategies", "fused", "--quiet", "--no-build", "--out", str(disk / "out")],
                              env=env, capture_output=True, text=True, timeout=600)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 4 and len(lines) == 1, done.stderr
        assert lines[0].startswith(f"explorer: cannot write {disk}") and "No space left on device" in lines[0]
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], capture_output=True)


def test_a_worker_over_its_memory_budget_is_a_failed_row_and_the_sweep_goes_on(cli, tmp_path):
    # 700 MB: TVM itself takes about 570 MB of address space, resnet18's compile more than the rest
    done = cli("sweep", "resnet18", "--targets", "cpu", "--strategies", "baseline,fused", "--no-build",
               "--worker-memory", "700M", "--quiet", "--out", tmp_path / "out")
    assert done.returncode == 1, done.stderr  # failed variants: exit 1, not a crash of the sweep
    rows = pd.read_csv(tmp_path / "out" / "variants.csv")
    assert list(rows["strategy"]) == ["baseline", "fused"]
    assert set(rows["status"]) == {"failed: out of memory (0.7 GB, --worker-memory)"}


def test_a_full_out_disk_mid_sweep_keeps_what_was_committed_and_a_rerun_with_room_resumes(conv_add_relu_onnx,
                                                                                          tmp_path):
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tiny(disk, "128k"):  # room for about five of the nine lowerings
        pytest.skip("needs root to mount a 128 kB tmpfs (CI runs as root)")
    try:
        cache = tmp_path / "cache"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "EXPLORER_CACHE": str(cache)}
        cmd = [sys.executable, "-m", "explorer.cli", "sweep", str(conv_add_relu_onnx), "--targets", TOY_TARGET,
               "--quiet", "--out", str(disk / "out")]
        full = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        lines = full.stderr.strip().splitlines()
        assert full.returncode == 4 and len(lines) == 1, full.stderr
        assert lines[0].startswith(f"explorer: cannot write {disk / 'out' / 'results.sqlite'}: database or disk is full")
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        stored = SQLiteStore(disk / "out" / "results.sqlite")
        kept = stored.counts()[0]  # whole transactions only: the store opens and reads
        stored.close()
        assert kept >= 1  # the variants finished before the disk filled
        import shutil

        shutil.rmtree(cache / "lowerings", ignore_errors=True)  # what a rerun reads back: the results store alone
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr
        assert f"compiled {9 - kept} lowerings, {kept} read back" in again.stdout
        assert len(pd.read_csv(disk / "out" / "variants.csv")) == 9
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], capture_output=True)
