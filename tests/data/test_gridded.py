"""A user's gridded field: names, order and dtype as they come; everything meaningless refused."""

import re

import numpy as np
import pytest
import xarray as xr

from lipsurrogate.cli import main
from lipsurrogate.data.dataset import save_dataset
from lipsurrogate.data.examples import example_field
from lipsurrogate.data.gridded import gridded_field, open_gridded
from lipsurrogate.exceptions import DataSchemaError


@pytest.fixture
def field():
    return example_field(times=5, kappas=3, positions=7)


def test_inputs_follow_the_file_or_the_chosen_order(field):
    g = gridded_field(field)
    assert g.name == "temperature" and g.inputs == ["time", "kappa", "position"]
    assert g.values.dtype == np.float64 and g.values.shape == (5, 3, 7)
    assert g.units == {"time": "s", "kappa": "m2 s-1", "position": "m", "temperature": "K"}
    h = gridded_field(field, "temperature", ["position", "time", "kappa"])
    assert np.array_equal(h.values, np.transpose(g.values, (2, 0, 1)))
    assert [a.size for a in h.axes] == [7, 5, 3]


def test_the_example_is_the_closed_form_it_states(field):
    a, s = np.array(field.attrs["amplitudes"]), field.attrs["slope"]
    t, kappa, x = 0.3, 0.05, 0.25
    exact = sum(a[n - 1] * np.sin(n * np.pi * x) * np.exp(-kappa * (n * np.pi) ** 2 * t) for n in range(1, len(a) + 1))
    from lipsurrogate.bounds import MultilinearInterpolant

    g = gridded_field(example_field(times=201, kappas=41, positions=201))
    approx = MultilinearInterpolant(g.axes, g.values)(np.array([[t, kappa, x]]))[0]
    assert approx == pytest.approx(exact + s * x, abs=2e-3)


def test_decreasing_axes_are_reversed_with_their_values(field):
    flipped = field.isel(position=slice(None, None, -1))
    g, h = gridded_field(field), gridded_field(flipped)
    assert np.array_equal(g.values, h.values) and np.array_equal(g.axes[2], h.axes[2])
    assert any("reversed" in note for note in h.notes)


def _with_coord(field, name, values):
    return field.assign_coords({name: (name, np.asarray(values, dtype=float))})


@pytest.mark.parametrize("change, message", [
    (lambda f: f.rename({"temperature": "T"}), r"No variable 'temperature'.*\['T'\]"),
    (lambda f: _with_coord(f, "kappa", [0.1, 0.3, 0.2]), r"'kappa' is not monotone: 0.3 at index 1"),
    (lambda f: _with_coord(f, "kappa", [0.1, 0.1, 0.2]), r"'kappa' repeats the value 0.1 at indices 0 and 1"),
    (lambda f: _with_coord(f, "time", [0, 1, np.nan, 3, 4]), r"'time' is not finite at index 2"),
    (lambda f: f.isel(kappa=slice(0, 1)), r"Axis 'kappa' of 'temperature' has 1 point"),
])
def test_bad_coordinates_and_missing_variables_are_refused(field, change, message):
    with pytest.raises(DataSchemaError, match=message):
        gridded_field(change(field), "temperature")


def test_non_finite_values_are_refused_with_their_place(field):
    bad = field.copy(deep=True)
    bad["temperature"][2, 1, 4] = np.inf
    with pytest.raises(DataSchemaError, match=r"1 NaN/inf value\(s\); the first at time=0.25 \(index 2\), kappa=0.06 \(index 1\), position=0.6666667 \(index 4\)"):
        gridded_field(bad)


def test_too_many_inputs_and_extra_dimensions_are_refused(field):
    five = field["temperature"].expand_dims(a=[0.0, 1.0], b=[0.0, 1.0])
    with pytest.raises(DataSchemaError, match="Expected 1 to 4 inputs"):
        gridded_field(five)
    with pytest.raises(DataSchemaError, match=r"Dimension '[ab]' .* is not an input"):
        gridded_field(five, inputs=["a", "time", "kappa"])
    one = field["temperature"].expand_dims(member=[3.0])
    assert gridded_field(one, inputs=["time", "kappa", "position"]).values.shape == (5, 3, 7)
    with pytest.raises(DataSchemaError, match="expected real numbers"):
        gridded_field(xr.DataArray(np.array([["a", "b"], ["c", "d"]]), dims=("x", "y"), name="s"))


def test_files_open_with_one_line_errors(tmp_path, field):
    path = save_dataset(field, tmp_path / "f.nc")
    assert "temperature" in open_gridded(path).data_vars
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"not a netcdf file at all")
    with pytest.raises(DataSchemaError, match=r"junk.nc is not a readable NetCDF-4/HDF5 file") as err:
        open_gridded(junk)
    assert "\n" not in str(err.value)
    with pytest.raises(DataSchemaError, match="does not exist"):
        open_gridded(tmp_path / "missing.nc")


@pytest.mark.parametrize("args, message", [
    (["--var", "pressure"], "No variable 'pressure'"),
    (["--var", "temperature", "--inputs", "time,depth"], r"\['depth'\] are not dimensions"),
])
def test_fit_field_refuses_bad_input_and_writes_nothing(tmp_path, field, capsys, args, message):
    path = save_dataset(field, tmp_path / "f.nc")
    out = tmp_path / "run"
    assert main(["fit", "field", str(path), *args, "--quick", "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err)
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["f.nc"]
