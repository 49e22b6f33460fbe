"""The kit behind the probe, from Python: declared option ranges, output checks, locks, atomic output that
survives Ctrl-C, stale temporary folders, and manifest field types."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from spatial import BundleError, read_bundle, staged_bundle
from spatial.bundle import finalize_manifest, new_manifest
from twin_kit import (
    InputError,
    atomic_output,
    check_output_dir,
    check_output_file,
    deferred_interrupts,
    destination_lock,
    opt,
    sweep_stale,
    validate_config,
)


@dataclass
class _Cfg:
    rate: float = opt(0.1, "a rate", low=0, low_open=True, high=1)
    count: int = opt(8, "a count", low=2, also=(0,))
    even: int = opt(4, "an even size", low=2, multiple_of=2)
    scale: float | None = opt(None, "a scale", low=0, low_open=True)
    pose: tuple[float, float] | None = opt(None, "a pose")
    mode: Literal["a", "b"] = opt("a", "a mode")
    device: str = opt("cpu", "a device", pattern=r"cpu|cuda(:\d+)?", pattern_help="cpu or cuda:N")


@pytest.mark.parametrize("field,value,message", [
    ("rate", float("nan"), "--rate must be a finite number in (0, 1], got nan"),
    ("rate", 0.0, "--rate must be a finite number in (0, 1], got 0"),
    ("rate", float("inf"), "--rate must be a finite number in (0, 1], got inf"),
    ("count", 1, "--count must be 0 or an integer >= 2, got 1"),
    ("count", True, "--count must be 0 or an integer >= 2, got True"),
    ("count", 2.5, "--count must be 0 or an integer >= 2, got 2.5"),
    ("even", 5, "--even must be an integer multiple of 2 >= 2, got 5"),
    ("scale", -1.0, "--scale must be a finite number > 0, got -1"),
    ("pose", (0.0, float("nan")), "--pose must be a finite number, got nan"),
    ("mode", "c", "--mode must be one of a, b; got 'c'"),
    ("device", "gpu", "--device must be cpu or cuda:N, got 'gpu'"),
])
def test_declared_ranges_give_one_line_messages(field, value, message):
    assert validate_config(_Cfg()) is not None
    cfg = _Cfg()
    setattr(cfg, field, value)
    with pytest.raises(InputError) as e:
        validate_config(cfg)
    assert str(e.value) == message


def test_verb_configs_check_themselves_when_built_from_python(tmp_path):
    from scenes.splats.train_config import RenderConfig, SplatConfig
    from sim.commands import SimConfig

    assert SplatConfig(bundle=tmp_path).steps > 0
    with pytest.raises(InputError, match="--lr-means must be a finite number"):
        SplatConfig(bundle=tmp_path, lr_means=float("nan"))
    with pytest.raises(InputError, match="--fps must be"):
        RenderConfig(bundle=tmp_path, fps=0)
    with pytest.raises(InputError, match="--worlds must be"):
        SimConfig(scene="x", worlds=0)


def test_output_checks(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty") == tmp_path / "empty"  # made for the result: nothing to lose
    (tmp_path / "d" / "notes.txt").write_text("keep")
    assert check_output_file(tmp_path / "new" / "v.mp4", (".mp4",)) == tmp_path / "new" / "v.mp4"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    for bad, msg in [(tmp_path / "d", "is a directory"), (tmp_path / "v.MOV", "must be a .mp4 file"),
                     (tmp_path / "f.txt" / "v.mp4", "is not a directory")]:
        with pytest.raises(InputError, match=msg):
            check_output_file(bad, (".mp4",))
    with pytest.raises(InputError, match="not a Twin bundle"):
        check_output_dir(tmp_path / "d", overwrite=True, replaceable=lambda p: False)
    with pytest.raises(InputError, match="is the input"):
        check_output_dir(tmp_path / "d", inputs=[tmp_path / "d"])
    with pytest.raises(InputError, match="contains the input"):
        check_output_dir(tmp_path, inputs=[tmp_path / "d" / "photos"], overwrite=True)
    assert check_output_dir(tmp_path / "d", merge=True) == tmp_path / "d"  # an export folder may exist


def _bundle(dest: Path, overwrite: bool = False, during=None) -> Path:
    with staged_bundle(dest, overwrite=overwrite) as tmp:
        (tmp / "marker.txt").write_text("new")
        if during is not None:
            during()
        finalize_manifest(tmp, new_manifest(input="test"))
    return dest


def test_staged_bundle_never_replaces_what_is_not_a_bundle(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="not a Twin bundle"):
        _bundle(user, overwrite=True)
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(BundleError, match="not a directory"):
        _bundle(tmp_path / "file", overwrite=True)

    # someone (not Twin) creates the destination while the bundle is being built: refused at the swap
    late = tmp_path / "late"

    def squat():
        late.mkdir()
        (late / "theirs.txt").write_text("theirs")

    with pytest.raises(BundleError, match="not a Twin bundle"):
        _bundle(late, during=squat)
    assert (late / "theirs.txt").read_text() == "theirs" and (user / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "late", "mine"]
    b = _bundle(tmp_path / "ok")
    _bundle(b, overwrite=True)  # a bundle is replaced
    assert read_bundle(b).manifest["provenance"]["input"] == "test"


def test_lock_is_reentrant_and_leaves_no_file(tmp_path):
    dest = tmp_path / "x"
    with destination_lock(dest):
        with destination_lock(dest):
            assert (tmp_path / ".x.lock").read_text().strip() == str(os.getpid())
        assert (tmp_path / ".x.lock").exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_keeps_the_suffix_and_cleans_up(tmp_path):
    dest = tmp_path / "sub" / "a.png"
    with pytest.raises(RuntimeError):
        with atomic_output(dest) as tmp:
            assert tmp.suffix == ".png" and tmp.parent == dest.parent
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # the folder it made is gone too
    with atomic_output(dest) as tmp:
        tmp.write_bytes(b"whole")
    assert dest.read_bytes() == b"whole" and sorted(p.name for p in dest.parent.iterdir()) == ["a.png"]


def test_cleanup_outlives_a_ctrl_c():
    """A Ctrl-C during a deferred block is delivered after it: the block finishes first."""
    code = ("import os, signal, time\nfrom twin_kit import deferred_interrupts\nstate = []\ntry:\n"
            "    with deferred_interrupts():\n        os.kill(os.getpid(), signal.SIGINT)\n        time.sleep(0.2)\n"
            "        state.append('finished')\nexcept KeyboardInterrupt:\n    print(state, 'interrupted after')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert r.stdout.strip() == "['finished'] interrupted after", r.stderr
    with deferred_interrupts():  # in this process too: nothing pending, nothing raised
        pass


def test_sweep_puts_back_a_bundle_moved_aside_by_a_dead_run(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    old = _bundle(tmp_path / f".b.old-{dead.pid}-ab12")  # the previous bundle, moved aside by a swap
    (tmp_path / f".b.tmp-{dead.pid}-cd34").mkdir()
    assert sweep_stale(tmp_path / "b") == [tmp_path / f".b.tmp-{dead.pid}-cd34"]
    assert not old.exists() and read_bundle(tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


@pytest.mark.parametrize("fields,message", [
    ({"files": "cameras.json"}, "'files' must be a list of file names, got \"cameras.json\""),
    ({"files": [1, 2]}, "'files' must be a list of file names"),
    ({"files": ["../../etc"]}, "must name files inside the bundle"),
    ({"version": True}, "'version' must be an integer, got true"),
    ({"version": "1"}, "'version' must be an integer, got \"1\""),
    ({"scale": [1]}, "'scale' must be an object"),
])
def test_manifest_field_types_are_checked(tmp_path, fields, message):
    b = _bundle(tmp_path / "b")
    m = json.loads((b / "scene.json").read_text())
    m.update(fields)
    (b / "scene.json").write_text(json.dumps(m))
    with pytest.raises(BundleError) as e:
        read_bundle(b)
    assert message in str(e.value) and "\n" not in str(e.value)
