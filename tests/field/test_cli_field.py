"""``proxima field`` through its own argparse harness (proxima.cli_field.main)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from proxima import cli_field
from proxima.golden import field as F


def run(capsys, *argv):
    rc = cli_field.main(["field", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_parse_helpers():
    assert cli_field.parse_int("42e9") == 42_000_000_000
    assert cli_field.parse_int("4.2e10") == 42_000_000_000
    assert cli_field.parse_int("-1") == -1
    for bad in ("1.5", "abc", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli_field.parse_int(bad)
    assert cli_field.parse_index("42e9,7") == (42_000_000_000, 7)
    assert cli_field.parse_index("0:4,::2") == (slice(0, 4), slice(None, None, 2))


def test_create_info_get(tmp_path, capsys):
    p = tmp_path / "brain"
    rc, out, _ = run(capsys, "create", p, "--shape", "86e9,1000", "--dtype", "float32")
    assert rc == 0 and "344 TB" in out
    f = F.open(p, "r+")
    f[42_000_000_000] = np.arange(1000, dtype=np.float32) / 4
    f.close()
    rc, out, _ = run(capsys, "get", p, "42e9,6")
    assert rc == 0 and out.strip() == "1.5"
    rc, out, _ = run(capsys, "get", p, "42e9", "--stats", "--max-print", "2000")
    assert rc == 0 and "249.75" in out and "tier hits" in out
    rc, out, _ = run(capsys, "get", p, "41999999999:42000000001,2:4")
    assert rc == 0 and "0.5" in out and "0.75" in out
    rc, out, _ = run(capsys, "info", p, "--verify", "--json", "--quiet")
    info = json.loads(out)
    assert rc == 0 and info["shape"] == [86_000_000_000, 1000] and info["chunk_files"] == 1
    assert info["verified_chunks"] == 1 and info["disk_bytes"] < 100e6
    rc, out, _ = run(capsys, "info", p)
    assert rc == 0 and "1 on disk" in out


def test_errors_exit_2(tmp_path, capsys):
    p = tmp_path / "f"
    assert run(capsys, "create", p, "--shape", "10,3")[0] == 0
    rc, _, err = run(capsys, "create", p, "--shape", "10,3")
    assert rc == 2 and "already exists" in err
    rc, _, err = run(capsys, "get", p, "10,0")
    assert rc == 2 and "out of range" in err
    rc, _, err = run(capsys, "info", tmp_path / "nope")
    assert rc == 2 and "no field" in err
    (p / "field.pxf").write_bytes(b"garbage")
    rc, _, err = run(capsys, "info", p)
    assert rc == 2 and "truncated" in err
    with pytest.raises(SystemExit):
        cli_field.main(["field", "create", str(tmp_path / "g"), "--shape", "0,3"])


def test_bench_small(tmp_path, capsys):
    rc, out, _ = run(capsys, "bench", "--mb", "1", "--gets", "500", "--quiet",
                     "--dir", tmp_path)
    assert rc == 0
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines()[2:]}
    assert set(lines) == {"random", "strided", "sequential"}
    assert float(lines["strided"][2].rstrip("%")) >= 90.0
    assert list(tmp_path.iterdir()) == []  # temporary field removed


def test_register_into_foreign_parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    cli_field.add_parser(sub)
    a = p.parse_args(["field", "get", "x", "1,2"])
    assert a.index == (1, 2) and a.func is cli_field._cmd_get
