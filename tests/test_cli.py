import subprocess
import sys

import pytest

from lipsurrogate import __version__
from lipsurrogate.cli import main


def test_version_and_help_are_fast_and_work():
    out = subprocess.run([sys.executable, "-m", "lipsurrogate", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout
    out = subprocess.run([sys.executable, "-m", "lipsurrogate", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "fit" in out.stdout
    # --help must not import torch (it takes seconds)
    code = "import sys; from lipsurrogate.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_tasks_lists_toys(capsys):
    assert main(["tasks"]) == 0
    assert "toy-moons" in capsys.readouterr().out


def test_unknown_task_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as err:
        main(["fit", "no-such-task"])
    assert err.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_existing_folder_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["fit", "toy-abs", "--quick", "--no-progress", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "not a run folder" in err and len(err.strip().splitlines()) == 1
    assert main(["fit", "toy-abs", "--quick", "--no-progress", "--overwrite", "--out", str(tmp_path / "run")]) == 2


def test_single_toy_run_folder(tmp_path, capsys):
    out = tmp_path / "abs"
    assert main(["fit", "toy-abs", "--quick", "--no-progress", "--out", str(out)]) == 0
    assert (out / "report.html").is_file() and (out / "figures" / "abs.png").is_file()
    assert "Run folder" in capsys.readouterr().out
    assert not list(tmp_path.glob(".abs.*"))  # no partial folder, no lock


def test_data_heat2d_and_pdebench_conversion(tmp_path, capsys):
    import xarray as xr

    from lipsurrogate.data.dataset import load_dataset
    from tests.data import pdebench_fixtures as fx

    out = tmp_path / "heat.nc"
    assert main(["data", "heat2d", "--grid", "8", "--frames", "3", "--backend", "numpy", "--samples", "2",
                 "--no-progress", "--out", str(out)]) == 0
    ds = load_dataset(out)
    assert ds.u.dims == ("sample", "t", "x", "y") and "solver max error" in capsys.readouterr().out
    src = fx.cfd_2d(tmp_path / "2D_CFD.hdf5")
    assert main(["data", "pdebench", str(src), "--sample", "all", "--field", "Vx", "--out", str(tmp_path / "c.h5")]) == 0
    converted = load_dataset(tmp_path / "c.h5")
    assert list(converted.data_vars) == ["Vx"] and converted.sizes["sample"] == 2
    from lipsurrogate.data.pdebench import load_pdebench

    xr.testing.assert_identical(converted, load_pdebench(src, sample='all', field='Vx'))


def test_data_errors_are_reported_without_traceback(tmp_path, capsys):
    assert main(["data", "heat2d", "--diffusivity", "-1", "--out", str(tmp_path / "h.nc")]) == 2
    assert "'diffusivity' must be a positive" in capsys.readouterr().err
    assert main(["data", "heat2d", "--out", str(tmp_path / "h.txt")]) == 2
    assert main(["data", "pdebench", "--out", str(tmp_path / "h.nc")]) == 2
    assert "needs the PDEBench FILE" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_local_block_takes_one_size_or_one_per_axis(capsys):
    import argparse

    from lipsurrogate.tasks.options import block_sizes

    assert block_sizes("2") == 2 and block_sizes("0") == 0
    assert block_sizes("1,1,4") == [1, 1, 4]
    assert block_sizes("-1") == -1 and block_sizes("1,0,2") == [1, 0, 2]  # the task refuses them, by name
    for bad in ("a", "", "1,x"):
        with pytest.raises(argparse.ArgumentTypeError):
            block_sizes(bad)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "heat2d", "--local-block", "1,x"])
    assert exit_info.value.code == 2
    assert "--local-block" in capsys.readouterr().err


def test_the_command_exits_without_teardown_but_with_its_output_and_atexit_handlers(tmp_path, capsys):
    # Note [exit without teardown]: buffered output, atexit handlers and the exit status survive
    code = ("import atexit, sys; from lipsurrogate.cli import _exit_without_teardown; "
            "atexit.register(lambda: print('handler ran')); sys.stdout.write('buffered, no newline'); "
            "_exit_without_teardown(3); print('not reached')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 3
    assert out.stdout == "buffered, no newlinehandler ran\n"
    # while another non-daemon thread runs, it returns and the normal exit waits for that thread
    flag = tmp_path / "thread_finished"
    code = ("import threading, time; from lipsurrogate.cli import _exit_without_teardown; "
            f"t = threading.Thread(target=lambda: (time.sleep(0.5), open({str(flag)!r}, 'w').close())); t.start(); "
            "_exit_without_teardown(5); print('returned')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "returned\n" and flag.exists()
    # the command itself: its whole output through a pipe, status 0
    out = subprocess.run([sys.executable, "-m", "lipsurrogate", "tasks"], capture_output=True, text=True)
    assert main(["tasks"]) == 0
    assert out.returncode == 0 and out.stdout == capsys.readouterr().out
