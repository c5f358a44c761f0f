"""The bounded cache (explorer.store.eviction): sizes, entries, least recently used first, and never an
entry a running command uses."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from explorer.core.errors import InputError
from explorer.store import eviction


@pytest.mark.parametrize("text, expected", [("40G", 40e9), ("40GB", 40e9), ("40GiB", 40 * 2 ** 30), ("500M", 5e8),
                                            ("1.5T", 1.5e12), ("123456", 123456), ("0", 0), ("2k", 2000)])
def test_sizes_read_as_the_explorer_prints_them(text, expected):
    assert eviction.parse_size(text) == expected


@pytest.mark.parametrize("text", ["5X", "-1G", "", "G"])
def test_a_size_that_is_not_one_is_one_clear_error(text):
    with pytest.raises(InputError, match="not a size"):
        eviction.parse_size(text)


def _entry(root, folder, name, size, age_s, suffixes=("",)):
    """Files of ``size`` bytes each, last used ``age_s`` seconds ago."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    when = time.time() - age_s
    for suffix in suffixes:
        p = root / folder / f"{name}{suffix}"
        p.write_bytes(b"x" * size)
        os.utime(p, (when, when))


def test_an_entry_is_a_stem_with_its_companions_oldest_use_first(tmp_path):
    _entry(tmp_path, "builds", "k1", 100, 50, (".so", ".json"))
    _entry(tmp_path, "models", "m", 10, 500, (".onnx",))
    _entry(tmp_path, "builds", ".k2", 7, 1, (".so",))  # a temporary being written: not an entry
    _entry(tmp_path, "tuning", "records", 1000, 900, (".json",))  # measurements: never evicted
    listed = eviction.entries(tmp_path)
    assert [(e.folder, e.name, e.size_bytes) for e in listed] == [("models", "m", 10), ("builds", "k1", 200)]


def test_a_size_limit_removes_the_least_recently_used_first(tmp_path):
    for i, age in enumerate((300, 100, 200)):  # e0 oldest, then e2, then e1
        _entry(tmp_path, "lowerings", f"e{i}", 100, age, (".json",))
    done = eviction.prune(max_bytes=150, root=tmp_path)
    assert [e.name for e in done.removed] == ["e0", "e2"] and done.kept_bytes == 100
    assert [e.name for e in eviction.entries(tmp_path)] == ["e1"]


def test_an_age_limit_removes_every_entry_unused_that_long(tmp_path):
    _entry(tmp_path, "prepared", "old", 10, 3 * 86400, (".onnx", ".json"))
    _entry(tmp_path, "prepared", "new", 10, 60, (".onnx", ".json"))
    done = eviction.prune(older_than_s=86400, root=tmp_path)
    assert [e.name for e in done.removed] == ["old"] and sorted(p.name for p in (tmp_path / "prepared").iterdir()) == [
        "new.json", "new.onnx"]


def test_an_entry_used_since_a_running_command_started_is_never_removed(tmp_path):
    _entry(tmp_path, "lowerings", "before", 10, 600, (".json",))
    with eviction.using_cache(tmp_path):
        _entry(tmp_path, "lowerings", "mine", 10, 0, (".json",))  # used by the running command
        done = eviction.prune(max_bytes=0, root=tmp_path)
    assert [e.name for e in done.removed] == ["before"] and done.held == 1
    assert (tmp_path / "lowerings" / "mine.json").exists()
    assert not (tmp_path / ".in-use" / str(os.getpid())).exists()  # its record went with it


def test_a_dead_command_s_record_holds_nothing(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".in-use").mkdir()
    (tmp_path / ".in-use" / dead.stdout.strip()).write_text(repr(time.time() - 3600))
    _entry(tmp_path, "models", "m", 10, 60, (".onnx",))
    assert eviction.prune(max_bytes=0, root=tmp_path).held == 0
    assert not list((tmp_path / ".in-use").iterdir())


def test_the_cap_comes_from_the_environment_then_the_config_then_the_disk(tmp_path, monkeypatch):
    monkeypatch.delenv("EXPLORER_CACHE_MAX", raising=False)
    import shutil

    assert eviction.cache_cap_bytes(tmp_path) == int(shutil.disk_usage(tmp_path).total * 0.25)
    (tmp_path / "cache.toml").write_text('max_size = "3G"\n')
    assert eviction.cache_cap_bytes(tmp_path) == 3e9
    monkeypatch.setenv("EXPLORER_CACHE_MAX", "500M")
    assert eviction.cache_cap_bytes(tmp_path) == 5e8


def test_within_its_cap_nothing_is_evicted(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE_MAX", "1k")
    _entry(tmp_path, "models", "m", 10, 60, (".onnx",))
    assert eviction.enforce_cap(tmp_path) is None
    monkeypatch.setenv("EXPLORER_CACHE_MAX", "5")
    assert [e.name for e in eviction.enforce_cap(tmp_path).removed] == ["m"]
