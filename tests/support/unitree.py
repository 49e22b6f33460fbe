"""The simulated G1 served over DDS for tests: `twin sim FLOOR --robot R --bridge unitree` in a subprocess on `lo`,
on a DDS domain of its own (so parallel runs do not hear each other), stopped with Ctrl-C for its JSON report."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def floor_mesh(path: Path) -> Path:
    """A 4 x 4 m floor slab (the lightest scene a robot stands in) written as a PLY mesh."""
    import trimesh

    floor = trimesh.creation.box(extents=(4.0, 4.0, 0.02))
    floor.apply_translation((0.0, 0.0, -0.01))
    floor.export(path)
    return path


def pick_domain() -> int:
    """A DDS domain id unlikely to be in use by another run on this machine (0 and 1 are the robot's and
    unitree_mujoco's)."""
    return random.Random(os.getpid() * 7919 + time.monotonic_ns()).randrange(20, 230)


@dataclass
class Bridge:
    proc: subprocess.Popen
    domain: int
    out: Path
    err: Path

    def stop(self, timeout: float = 60.0) -> dict:
        """Ctrl-C the bridge and return its JSON report (the last stdout line)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        lines = self.out.read_text().strip().splitlines()
        assert self.proc.returncode == 0 and lines, (self.proc.returncode, self.err.read_text()[-3000:])
        return json.loads(lines[-1])

    def wait_serving(self, timeout: float = 240.0) -> None:
        """Block until the bridge says it is serving (its world is built and rt/lowstate is being published): a
        client with a short connect timeout, as `twin deploy` has, must not race the 10-20 s build."""
        deadline = time.monotonic() + timeout
        while "serving " not in self.err.read_text():
            assert self.proc.poll() is None, (self.proc.returncode, self.err.read_text()[-3000:])
            assert time.monotonic() < deadline, f"the bridge did not serve within {timeout:g} s"
            time.sleep(0.2)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_bridge(tmp: Path, robot: str = "g1_upper", domain: int | None = None, *extra: str) -> Bridge:
    """Start `twin sim` serving `robot` on a floor over DDS (interface lo); returns at once (it takes 10-20 s to
    build the world: wait for its first LowState_)."""
    domain = pick_domain() if domain is None else domain
    scene = floor_mesh(tmp / "floor.ply")
    out, err = tmp / "bridge.out", tmp / "bridge.err"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen([sys.executable, "-m", "twin_cli", "sim", str(scene), "--robot", robot, "--bridge",
                                 "unitree", "--interface", "lo", "--domain", str(domain), "--json", *extra],
                                cwd=tmp, env=env, stdout=fo, stderr=fe,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return Bridge(proc, domain, out, err)
