"""generate_family on a small local Dask cluster: equal to heat2d, chunk-independent, resumable."""

import sys

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("dask.distributed")

from lipsurrogate.data import distributed as dd  # noqa: E402
from lipsurrogate.data.dataset import load_dataset  # noqa: E402
from lipsurrogate.data.generators import heat2d  # noqa: E402
from lipsurrogate.exceptions import ConfigurationError  # noqa: E402

OPTIONS = dict(grid=8, frames=3, t_end=0.1, backend="numpy", diffusivity_range=(0.05, 0.1))
N, SEED = 10, 3
EXTRA_ATTRS = ("samples_written", "family_request")


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def reference():
    return heat2d(samples=N, seed=SEED, progress=False, **OPTIONS)


def _without_extra(ds):
    assert ds.attrs["samples_written"] == N
    ds.attrs = {k: v for k, v in ds.attrs.items() if k not in EXTRA_ATTRS}
    return ds


def test_family_equals_heat2d_for_any_chunking_and_scheduler(client, reference, tmp_path):
    by_address = dd.generate_family(samples=N, out=tmp_path / "a.nc", chunk=3, scheduler=client.scheduler.address,
                                    seed=SEED, progress=False, **OPTIONS)
    by_client = dd.generate_family(samples=N, out=tmp_path / "b.h5", chunk=5, scheduler=client, seed=SEED,
                                   progress=False, max_in_flight=1, **OPTIONS)
    assert client.status == "running"  # a Client passed in is left open
    for path in (by_address, by_client):
        assert not dd.partial_path(path).exists()
        xr.testing.assert_identical(_without_extra(load_dataset(path)), reference)
    with xr.open_dataset(by_address, engine="h5netcdf") as lazy:
        assert lazy.u.shape == (N, 3, 8, 8)
        assert lazy.u.encoding["chunksizes"] == (1, 3, 8, 8)


def test_default_local_cluster_one_worker(reference, tmp_path):
    path = dd.generate_family(samples=N, out=tmp_path / "c.nc", chunk=4, n_workers=1, seed=SEED, progress=False,
                              **OPTIONS)
    xr.testing.assert_identical(_without_extra(load_dataset(path)), reference)


def test_interrupted_run_leaves_a_partial_file_and_resumes(client, reference, tmp_path, monkeypatch):
    out = tmp_path / "family.nc"
    write = dd._write_chunk
    calls = []

    def crash_on_third(f, start, frames, errors):
        calls.append(start)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated interruption")
        write(f, start, frames, errors)

    monkeypatch.setattr(dd, "_write_chunk", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        dd.generate_family(samples=N, out=out, chunk=2, scheduler=client, seed=SEED, progress=False, **OPTIONS)
    assert not out.exists()  # nothing at the final path looks complete
    part = dd.partial_path(out)
    with xr.open_dataset(part, engine="h5netcdf") as ds:
        assert ds.attrs["samples_written"] == 4
        assert int(np.isfinite(ds.solver_error.values).sum()) == 4
        assert "solver_max_error" not in ds.attrs

    monkeypatch.setattr(dd, "_write_chunk", write)
    resumed = []
    monkeypatch.setattr(dd, "_write_chunk", lambda f, s, fr, e: (resumed.append(s), write(f, s, fr, e)))
    dd.generate_family(samples=N, out=out, chunk=2, scheduler=client, seed=SEED, progress=False, **OPTIONS)
    assert sorted(resumed) == sorted(set(range(0, N, 2)) - set(calls[:2]))  # only the missing chunks
    xr.testing.assert_identical(_without_extra(load_dataset(out)), reference)

    with pytest.raises(FileExistsError, match="overwrite"):
        dd.generate_family(samples=N, out=out, scheduler=client, seed=SEED, progress=False, **OPTIONS)


def test_a_partial_file_of_another_request_is_refused(client, tmp_path):
    out = tmp_path / "family.nc"
    dd._create(dd.partial_path(out), dd._heat_plan("periodic", 4, 0, dict(OPTIONS)), "another request")
    with pytest.raises(ConfigurationError, match="different generate_family request"):
        dd.generate_family(samples=N, out=out, scheduler=client, seed=SEED, progress=False, **OPTIONS)


def test_argument_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigurationError, match="'pde' of generate_family"):
        dd.generate_family("burgers1d", samples=2, out=tmp_path / "x.nc")
    with pytest.raises(ConfigurationError, match="Unknown option"):
        dd.generate_family(samples=2, out=tmp_path / "x.nc", gird=8)
    with pytest.raises(ConfigurationError, match="'chunk'"):
        dd.generate_family(samples=2, out=tmp_path / "x.nc", chunk=0)
    with pytest.raises(ConfigurationError, match="'scheduler' must be"):
        dd.generate_family(samples=2, out=tmp_path / "x.nc", scheduler=8786, **OPTIONS)
    assert not dd.partial_path(tmp_path / "x.nc").exists()
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(ImportError, match=r"lipsurrogate\[scale\]"):
        dd.generate_family(samples=2, out=tmp_path / "x.nc", **OPTIONS)


def test_cli_generates_a_family_on_a_local_dask_cluster(tmp_path, capsys):
    from lipsurrogate.cli import main

    out = tmp_path / "family.nc"
    assert main(["data", "heat2d", "--samples", "4", "--grid", "8", "--frames", "3", "--scheduler", "local",
                 "--workers", "1", "--chunk", "3", "--backend", "numpy", "--no-progress", "--out", str(out)]) == 0
    assert "4 samples on Dask" in capsys.readouterr().out
    with xr.open_dataset(out, engine="h5netcdf") as ds:
        reference = heat2d(samples=4, grid=8, frames=3, seed=0, backend="numpy", progress=False)
        np.testing.assert_array_equal(ds.u.values, reference.u.values)
