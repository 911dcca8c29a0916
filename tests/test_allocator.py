import pytest

from lipsurrogate import _allocator


def test_malloc_thresholds_are_set_on_glibc_and_the_users_settings_win():
    if _allocator._glibc() is None:
        pytest.skip("not glibc: tune_malloc does nothing here by design")
    assert _allocator.tune_malloc({}) is True
    assert _allocator.tune_malloc({"LIPSURROGATE_MALLOC": "default"}) is False
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        assert _allocator.tune_malloc({name: "1"}) is False


def test_the_command_tunes_malloc_before_it_runs(monkeypatch, tmp_path):
    from lipsurrogate import cli

    calls = []
    monkeypatch.setattr(_allocator, "tune_malloc", lambda: calls.append(True) or True)
    assert cli.main(["tasks"]) == 0 and calls == []  # listing the tasks computes nothing
    assert cli.main(["verify", str(tmp_path / "absent")]) == 2  # not a run folder, after the tuning
    assert calls == [True]
