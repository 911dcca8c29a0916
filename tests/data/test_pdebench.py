import h5py
import numpy as np
import pytest
import xarray as xr

from lipsurrogate.data.dataset import load_dataset, save_dataset
from lipsurrogate.data.pdebench import load_pdebench, open_pdebench
from lipsurrogate.exceptions import DataSchemaError

from . import pdebench_fixtures as fx


def test_flat_1d_drops_the_extra_time_coordinate(tmp_path):
    path = fx.flat_tensor_1d(tmp_path / "1D_Advection_Sols_beta0.1.hdf5")
    ds = load_pdebench(path, sample=1)
    assert ds["u"].dims == ("t", "x") and ds["u"].shape == (4, 8)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(ds["u"].values, f["tensor"][1])
        np.testing.assert_array_equal(ds["t"].values, f["t-coordinate"][:4])
    assert "dropped" in ds.attrs["time_coordinate_note"]
    assert ds.attrs["layout"] == "tensor"


def test_flat_1d_with_matching_time_has_no_note(tmp_path):
    ds = load_pdebench(fx.flat_tensor_1d(tmp_path / "f.hdf5", extra_time=False))
    assert "time_coordinate_note" not in ds.attrs


def test_cfd_fields_and_family(tmp_path):
    path = fx.cfd_2d(tmp_path / "2D_CFD_test.hdf5")
    with open_pdebench(path) as f:
        assert f.layout == "cfd" and f.fields == ["density", "pressure", "Vx", "Vy"] and f.n_samples == 2
        family = f.to_dataset()
    assert family["density"].dims == ("sample", "t", "x", "y")
    assert family["Vy"].shape == (2, 3, 6, 5)
    one = load_pdebench(path, sample=0, field="pressure")
    assert list(one.data_vars) == ["pressure"]


def test_darcy(tmp_path):
    ds = load_pdebench(fx.darcy(tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"), sample=1)
    assert set(ds.data_vars) == {"u", "a"} and ds["u"].dims == ("x", "y")


def test_per_seed_yx_order_is_transposed(tmp_path):
    path = fx.per_seed_2d(tmp_path / "2D_diff-react_NA_NA.h5")
    ds = load_pdebench(path, sample=1)
    assert ds["u"].dims == ("t", "x", "y") and ds["u"].shape == (5, 4, 3)
    with h5py.File(path) as f:
        raw = f["0001/data"][...]
    np.testing.assert_array_equal(ds["v"].values, raw[..., 1].transpose(0, 2, 1))
    assert "seed: 1" in ds.attrs["config"]
    assert "(y, x)" in ds.attrs["spatial_order_note"]


def test_per_seed_other_files_keep_xy(tmp_path):
    path = fx.per_seed_2d(tmp_path / "2D_rdb_NA_NA.h5", nx=4, ny=4, channels=1)
    ds = load_pdebench(path, sample=0)
    assert list(ds.data_vars) == ["u"] and "spatial_order_note" not in ds.attrs


def test_round_trip_through_netcdf(tmp_path):
    ds = load_pdebench(fx.cfd_2d(tmp_path / "c.hdf5"), sample="all")
    out = save_dataset(ds, tmp_path / "c.nc")
    xr.testing.assert_identical(load_dataset(out), ds)


def test_reading_one_sample_reads_only_that_sample(tmp_path, monkeypatch):
    path = fx.flat_tensor_1d(tmp_path / "big.hdf5", n=50)
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        out = original(self, key)
        reads.append((self.name, np.asarray(out).size))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    load_pdebench(path, sample=7)
    tensor_reads = [size for name, size in reads if name == "/tensor"]
    assert tensor_reads == [4 * 8]  # one sample, not 50


def test_foreign_truncated_and_missing_files(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(DataSchemaError, match=r"foreign\.h5.*no known PDEBench layout.*something.*Layouts expected"):
        open_pdebench(foreign)
    truncated = tmp_path / "trunc.hdf5"
    fx.flat_tensor_1d(truncated)
    truncated.write_bytes(truncated.read_bytes()[:600])
    with pytest.raises(DataSchemaError, match="not a readable HDF5"):
        open_pdebench(truncated)
    with pytest.raises(DataSchemaError, match="does not exist"):
        open_pdebench(tmp_path / "nope.hdf5")


def test_inconsistent_shapes_are_named(tmp_path):
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.zeros((2, 4, 8), np.float32)
        f["x-coordinate"] = np.zeros(7)
        f["t-coordinate"] = np.zeros(4)
    with pytest.raises(DataSchemaError, match="'x-coordinate' has 7 entries but the field has 8"):
        load_pdebench(path)
    with h5py.File(path, "a") as f:
        del f["x-coordinate"]
        f["x-coordinate"] = np.zeros(8)
        del f["t-coordinate"]
        f["t-coordinate"] = np.zeros(9)
    with pytest.raises(DataSchemaError, match="9 entries for 4 frames"):
        load_pdebench(path)
    with pytest.raises(DataSchemaError, match="2 samples; got sample=5"):
        load_pdebench(path, sample=5)


def _edit(path, key, change):
    with h5py.File(path, "r+") as f:
        data = f[key][...]
        change(data)
        del f[key]
        f[key] = data


@pytest.mark.parametrize("key, change, message", [
    ("tensor", lambda a: a.__setitem__((1, 2, 3), np.nan), r"field 'u' of sample 1 has 1 NaN/inf value\(s\); the first at index \(2, 3\)"),
    ("tensor", lambda a: a.__setitem__((1, 0, 0), np.inf), r"field 'u' of sample 1 has 1 NaN/inf"),
    ("x-coordinate", lambda a: a.__setitem__(4, np.nan), r"coordinate 'x' of sample 1 is not finite at index 4"),
    ("x-coordinate", lambda a: a.__setitem__(4, a[2]), r"coordinate 'x' of sample 1 is not strictly increasing at index 3"),
    ("t-coordinate", lambda a: a.__setitem__(slice(None), a[::-1]), r"coordinate 't' of sample 1 is not strictly increasing"),
])
def test_bad_values_and_coordinates_are_refused_with_the_first_bad_index(tmp_path, key, change, message):
    path = fx.flat_tensor_1d(tmp_path / "f.hdf5")
    _edit(path, key, change)
    with pytest.raises(DataSchemaError, match=message):
        load_pdebench(path, sample=1)


def test_string_tensors_and_corrupted_files_are_one_line_errors(tmp_path):
    path = tmp_path / "s.hdf5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.array([[["a", "b"]] * 3] * 2, dtype="S1")
        f["x-coordinate"] = np.linspace(0, 1, 2)
        f["t-coordinate"] = np.linspace(0, 1, 3)
    with pytest.raises(DataSchemaError, match=r"field .u. of sample 0 has dtype \|S1; expected real numbers"):
        load_pdebench(path)
    good = fx.flat_tensor_1d(tmp_path / "g.hdf5")
    raw = bytearray(good.read_bytes())
    raw[200:2000] = bytes(len(raw[200:2000]))  # zero out the object headers after the superblock
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(bytes(raw))
    with pytest.raises(DataSchemaError, match="broken.hdf5") as err:
        load_pdebench(broken)
    assert "\n" not in str(err.value)
