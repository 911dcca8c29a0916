"""HEPMASS loader (tiny files in exactly the HEPMASS format) and the synthetic generator."""

import gzip

import numpy as np
import pytest

from lipsurrogate.data.hepmass import (COLUMNS, HEPMASS_MASSES, IMB_FRACTIONS, assign_background_mass,
                                       iter_hepmass_csv, load_hepmass, synthetic_hepmass)
from lipsurrogate.exceptions import ConfigurationError, DataSchemaError

HEADER = ",".join(COLUMNS)


def _rows(rng, n, masses=("499.99997", "750", "1000", "1250", "1500")):
    """Rows as HEPMASS writes them: label, 27 normalised features, mass (500 as 499.99997)."""
    rows = []
    for i in range(n):
        label = "1" if i % 2 else "0"
        feats = ",".join(f"{v:.6f}" for v in rng.normal(size=27))
        rows.append(f"{label},{feats},{masses[i % len(masses)]}")
    return rows


def _write(path, rows, header=HEADER):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_reads_a_tiny_file_and_snaps_499_99997_to_500(tmp_path, rng):
    rows = _rows(rng, 23)
    path = _write(tmp_path / "all_train.csv", rows)
    data = load_hepmass(path)
    assert len(data) == 23 and data.features.shape == (23, 27) and data.features.dtype == np.float32
    assert set(np.unique(data.mass)) <= set(HEPMASS_MASSES)
    assert data.mass[0] == 500.0  # written as 499.99997
    expected = np.array([[float(v) for v in r.split(",")[1:-1]] for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(data.features, expected)
    np.testing.assert_array_equal(data.label, [int(r[0]) for r in rows])
    assert np.all(data.process[data.label == 1] == -1) and np.all(data.process[data.label == 0] == 0)


def test_chunks_cover_the_file_and_name_their_first_line(tmp_path, rng):
    rows = _rows(rng, 25)
    path = _write(tmp_path / "f.csv", rows)
    chunks = list(iter_hepmass_csv(path, chunksize=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert [c.attrs["first_line"] for c in chunks] == [2, 12, 22]
    whole = load_hepmass(path)
    np.testing.assert_array_equal(np.concatenate([c.features for c in chunks]), whole.features)
    assert len(list(iter_hepmass_csv(path, chunksize=10, max_rows=13))[-1]) == 3


def test_gzip_and_several_files_and_no_mass_snapping(tmp_path, rng):
    rows = _rows(rng, 6)
    gz = tmp_path / "imbalanced_signal.csv.gz"
    with gzip.open(gz, "wt") as f:
        f.write("\n".join([HEADER, *rows]) + "\n")
    plain = _write(tmp_path / "imbalanced_background.csv", rows)
    data = load_hepmass([gz, plain])
    assert len(data) == 12
    raw = load_hepmass(plain, masses=None)
    assert raw.mass[0] == pytest.approx(499.99997)
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode())
    np.testing.assert_array_equal(load_hepmass(crlf).features, data.features[:6])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rows: rows.__setitem__(3, rows[3] + ",0.5"), r"line 5: expected 29 comma-separated values .* got 30"),
        (lambda rows: rows.__setitem__(0, rows[0].rsplit(",", 1)[0]), r"line 2: expected 29 comma-separated values"),
        (lambda rows: rows.__setitem__(6, ",".join(v if j != 5 else "" for j, v in enumerate(rows[6].split(",")))),
         r"line 8, column 'f4' \(field 6\): expected a number, got ''"),
        (lambda rows: rows.__setitem__(2, "2" + rows[2][1:]), r"line 4, column '# label': expected 0 \(background\) or 1"),
        (lambda rows: rows.__setitem__(4, rows[4].rsplit(",", 1)[0] + ",600"), r"line 6, column 'mass': expected one of"),
        (lambda rows: rows.__setitem__(5, rows[5].rsplit(",", 1)[0] + ",nan"), r"line 7, column 'mass': expected a finite"),
    ],
)
def test_malformed_rows_are_refused_with_line_and_column(tmp_path, rng, edit, message):
    rows = _rows(rng, 12)
    edit(rows)
    path = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(DataSchemaError, match=message):
        load_hepmass(path, chunksize=4)


def test_a_bad_value_names_its_column(tmp_path, rng):
    rows = _rows(rng, 5)
    fields = rows[2].split(",")
    fields[8] = "x1"  # f7
    rows[2] = ",".join(fields)
    with pytest.raises(DataSchemaError, match=r"line 4, column 'f7' \(field 9\): expected a number, got 'x1'"):
        load_hepmass(_write(tmp_path / "bad.csv", rows))


def test_bad_headers_and_files(tmp_path, rng):
    rows = _rows(rng, 3)
    with pytest.raises(DataSchemaError, match=r"line 1 \(header\), column 1: expected '# label', got 'label'"):
        load_hepmass(_write(tmp_path / "a.csv", rows, header=HEADER.replace("# label", "label")))
    with pytest.raises(DataSchemaError, match=r"column 29: expected 'mass', got None"):
        load_hepmass(_write(tmp_path / "b.csv", rows, header=HEADER.rsplit(",", 1)[0]))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataSchemaError, match="empty file"):
        load_hepmass(tmp_path / "empty.csv")
    with pytest.raises(DataSchemaError, match="no such file"):
        load_hepmass(tmp_path / "missing.csv")


def test_synthetic_structure_imbalance_and_seeding():
    data = synthetic_hepmass(20_000, imbalance="hepmass-imb", seed=3)
    counts = data.counts()
    per_mass = 20_000 * 0.5 / 5
    for m, frac in IMB_FRACTIONS.items():
        assert counts["signal"][m] == round(per_mass * frac)
    assert counts["background"] == {"ttbar": 7500, "wjets": 2500}
    assert data.features.shape == (len(data), 27) and np.all(np.isfinite(data.features))
    again = synthetic_hepmass(20_000, imbalance="hepmass-imb", seed=3)
    np.testing.assert_array_equal(data.features, again.features)
    # the resonance feature tracks the signal mass
    med = [np.median(data.features[(data.label == 1) & (data.mass == m), 26]) for m in HEPMASS_MASSES]
    assert np.all(np.diff(med) > 0) and abs(med[2] / 1000 - 1) < 0.1
    ds = data.to_xarray()
    assert ds["mass"].attrs["units"] == "GeV" and ds.sizes["feature"] == 27


def test_background_mass_assignments():
    rng = np.random.default_rng(0)
    data = synthetic_hepmass(40_000, imbalance="hepmass-imb", background_mass="identical", seed=1)
    bkg = data.label == 0
    sig_share = np.array([np.mean(data.mass[~bkg] == m) for m in HEPMASS_MASSES])
    bkg_share = np.array([np.mean(data.mass[bkg] == m) for m in HEPMASS_MASSES])
    assert np.allclose(sig_share, bkg_share, atol=0.02)  # identical distribution
    uni = assign_background_mass(data, "uniform", rng)
    share = np.array([np.mean(uni.mass[bkg] == m) for m in HEPMASS_MASSES])
    assert np.allclose(share, 0.2, atol=0.02)
    np.testing.assert_array_equal(uni.mass[~bkg], data.mass[~bkg])
    with pytest.raises(ConfigurationError, match="'background_mass' must be one of"):
        assign_background_mass(data, "flat", rng)
    with pytest.raises(ConfigurationError, match="'imbalance'"):
        synthetic_hepmass(100, imbalance="imb", seed=0)
