"""``proxima fpga program`` / ``query`` fail clearly (exit 2, one line) without a board."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from proxima.cli import main
from proxima.config import preset
from proxima.golden.image import write_image
from proxima.golden.index import Index
from proxima.golden.pq import encode, train_codebook
from tests.golden.conftest import clustered_u8, knn_plus_random_graph


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    cfg = preset("tiny")
    x = clustered_u8(60, cfg.vec.dim, seed=1)
    book = train_codebook(cfg, x, seed=1)
    idx = Index(cfg, x, knn_plus_random_graph(x, cfg.graph.R, seed=1), 0, book,
                encode(cfg, x, book), hot=np.arange(60) < 4)
    d = tmp_path_factory.mktemp("cli_fpga")
    write_image(d / "i.pxi", idx)
    np.save(d / "q.npy", clustered_u8(3, cfg.vec.dim, seed=9).astype(np.uint8))
    return d


def test_query_without_board(image, capsys):
    rc = main(["fpga", "query", "--port", "/dev/ttyNOSUCHPORT", "--index", str(image / "i.pxi"),
               "--queries", str(image / "q.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot open serial port /dev/ttyNOSUCHPORT" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_query_silent_port(image, capsys):
    """A port where nothing answers (a pyserial loop-back echoes our own command)."""
    rc = main(["fpga", "query", "--port", "loop://", "--timeout", "0.05",
               "--index", str(image / "i.pxi"), "--queries", str(image / "q.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and "error:" in err and "Traceback" not in err


def test_program_without_bitstream(tmp_path, capsys):
    rc = main(["fpga", "program", "--board", "ulx3s-85f", "--bitstream", str(tmp_path / "x.bit")])
    assert rc == 2 and "not found" in capsys.readouterr().err


@pytest.mark.parametrize("board", ["ulx3s-85f", "icebreaker"])
def test_program_without_board(tmp_path, capsys, board):
    bit = tmp_path / "top.bit"
    bit.write_bytes(b"\x00" * 64)
    rc = main(["fpga", "program", "--board", board, "--bitstream", str(bit)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    if shutil.which("openFPGALoader") or shutil.which("iceprog"):
        assert "board found" in err, err
    else:
        assert "apt-get install openfpgaloader" in err, err
