"""The `twin` command: --help on every verb, one-line errors with exit code 2."""
import subprocess
import sys

import pytest

from twin_cli.main import build_parser, verbs


def _twin(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "twin_cli", *args], capture_output=True, text=True, timeout=timeout)


def test_every_verb_has_help():
    parser = build_parser()
    names = [v.name for v in verbs()]
    assert {"reconstruct", "eval-poses", "demo"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as e:
            parser.parse_args([*name.split(), "--help"])
        assert e.value.code == 0


def test_missing_input_is_one_line_error(tmp_path):
    r = _twin("reconstruct", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "nope" in lines[0] and "error" in lines[0]
    assert not (tmp_path / "out").exists()


def test_bad_bundle_for_eval(tmp_path):
    (tmp_path / "b").mkdir()
    r = _twin("eval-poses", str(tmp_path / "b"), "--reference", str(tmp_path / "b"))
    assert r.returncode == 2 and "error" in r.stderr
