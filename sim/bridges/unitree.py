"""`twin sim SCENE --robot g1 --bridge unitree`: a simulated G1 on Unitree's low-level DDS topics, as unitree_mujoco
serves its MuJoCo G1, so a controller written for the robot (unitree_sdk2, Twin's `G1Adapter`) drives the twin by
pointing it at this machine's interface, and the robot by pointing it at the robot's.

Every physics step (2 ms, paced to real time) the bridge publishes a `LowState_` on rt/lowstate: per motor the
joint position, velocity, acceleration and torque (what the drive applied, plus the gravity compensation Twin's
fixed-base models get, so it reads as the motor's torque on the robot), the pelvis IMU (orientation, angular
velocity, specific force in the IMU frame; acceleration by finite difference of the pelvis velocity), a tick in
milliseconds of simulated time and its CRC. It subscribes rt/lowcmd: a `LowCmd_` whose CRC is wrong, or whose
enabled motors carry NaN/inf, is ignored (and counted); otherwise each mapped motor's command becomes, until the
next one, the torque tau + kp (q - q_measured) + kd (dq - dq_measured) as the motor's driver applies it: MuJoCo
position actuators with that stiffness and damping (integrated implicitly, like a driver's fast inner loop) and
tau + kd dq as a feed-forward force. A motor with mode 0 is off (no torque). Until the first valid command the
robot holds its home pose on the model's own gains.

Motors map to the model's joints by name (`unitree_hg.G1_JOINTS`); joints the model locks (g1_upper: all but the
right arm) read 0 and ignore commands. The free-floating G1 (robot g1) hangs by its torso from an elastic band,
as in unitree_mujoco, unless `--no-band`: without a balance controller it would fall in about two seconds. The
bridge runs on the `mujoco_cpu` solver, one world.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from sim.bridges import unitree_hg as hg
from twin_kit import InputError, qconj, qrot

STATE_HZ = 500              # rt/lowstate rate of the real G1; one physics step per state
GRAVITY = np.array([0.0, 0.0, -9.81])
BAND_LINK = "torso_link"    # where the elastic band holds a free G1 (above its centre of mass)


@dataclass
class Command:
    """The motor arrays (35 each) of the last valid LowCmd_, and when it arrived (monotonic s)."""

    mode: np.ndarray
    q: np.ndarray
    dq: np.ndarray
    tau: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    received: float


@dataclass
class BridgeStats:
    """What the bridge saw: states published, commands taken, ignored (bad CRC, non-finite), and motors commanded
    that the model does not drive."""

    states: int = 0
    commands: int = 0
    bad_crc: int = 0
    nonfinite: int = 0
    unmapped_enabled: set = field(default_factory=set)
    rejected: list = field(default_factory=list)    # the first few ignored commands, described (see `_describe`)


def _robot_joints(world) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, coordinate index, dof index) of the robot's scalar joints in world 0."""
    import newton

    m = world.model
    jpw = m.joint_count // world.n
    kinds = m.joint_type.numpy()[:jpw]
    q0, d0 = m.joint_q_start.numpy()[:jpw], m.joint_qd_start.numpy()[:jpw]
    scalar = (int(newton.JointType.REVOLUTE), int(newton.JointType.PRISMATIC))
    rows = [(str(m.joint_label[j]).split("/")[-1], int(q0[j]), int(d0[j])) for j in range(jpw) if kinds[j] in scalar]
    names, coords, dofs = zip(*rows) if rows else ((), (), ())
    return list(names), np.array(coords, dtype=int), np.array(dofs, dtype=int)


class G1Drive:
    """The world side of the bridge: the G1 motors the model drives, their PD drives, and their readings."""

    def __init__(self, world):
        if world.cfg.solver != "mujoco_cpu":
            raise InputError(f"--bridge unitree runs on solver mujoco_cpu (the CPU default), not {world.cfg.solver}")
        if world.n != 1:
            raise InputError("--bridge unitree serves one world; drop --worlds")
        names, coords, dofs = _robot_joints(world)
        index = {n: i for i, n in enumerate(hg.G1_JOINTS)}
        keep = [k for k, n in enumerate(names) if n in index]
        if not keep:
            raise InputError(f"robot {world.robot.spec.name!r} has none of the G1's joints; --bridge unitree "
                             f"serves g1, g1_upper or g1_hands")
        self.world, self.mb = world, world.solver
        self.motors = np.array([index[names[k]] for k in keep])     # G1 motor of each driven joint
        self.coords, self.dofs = coords[keep], dofs[keep]
        self.names = [names[k] for k in keep]
        targets = dict(zip(self.mb.act["pos"][1].tolist(), self.mb.act["pos"][0].tolist()))
        self.actuators = np.array([targets[c] for c in self.coords])
        mj_dof = np.empty(self.mb.dofs, dtype=int)
        mj_dof[self.mb.qd_newton] = np.arange(self.mb.mj_model.nv)[self.mb.qd_mj]
        self.mj_dofs = mj_dof[self.dofs]
        self.gain = self.mb.batch.expand("actuator_gainprm")
        self.bias = self.mb.batch.expand("actuator_biasprm")
        self.qfrc_actuator = self.mb.batch.bind("qfrc_actuator")
        self.qfrc_gravcomp = self.mb.batch.bind("qfrc_gravcomp")
        self.qacc = self.mb.batch.bind("qacc")
        self.effort = np.abs(self.mb.mj_model.jnt_actfrcrange[self.mb.mj_model.dof_jntid[self.mj_dofs]]).max(1)
        self.effort[self.effort == 0] = np.inf
        self.mode = np.ones(len(self.motors), dtype=np.uint8)

    def apply(self, cmd: Command) -> None:
        """Make `cmd` the drives' setpoints (until the next one)."""
        m = self.motors
        on = cmd.mode[m] != 0
        kp, kd = np.where(on, cmd.kp[m], 0.0), np.where(on, cmd.kd[m], 0.0)
        self.gain[0, self.actuators, 0] = kp
        self.bias[0, self.actuators, 1] = -kp
        self.bias[0, self.actuators, 2] = -kd
        self.world.control.joint_target_q.numpy()[self.coords] = cmd.q[m]
        ff = np.where(on, np.clip(cmd.tau[m] + cmd.kd[m] * cmd.dq[m], -self.effort, self.effort), 0.0)
        self.world.control.joint_f.numpy()[self.dofs] = ff
        self.mode = on.astype(np.uint8)

    def read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Measured (q, dq, ddq, tau) of the driven joints."""
        st = self.world.state
        q = st.joint_q.numpy()[self.coords].astype(np.float64)
        dq = st.joint_qd.numpy()[self.dofs].astype(np.float64)
        ff = self.world.control.joint_f.numpy()[self.dofs]
        tau = self.qfrc_actuator[0, self.mj_dofs] + self.qfrc_gravcomp[0, self.mj_dofs] + ff
        return q, dq, self.qacc[0, self.mj_dofs].copy(), tau


class PelvisImu:
    """The G1's pelvis IMU from the simulated pelvis (the fixed base when the model has no free pelvis)."""

    def __init__(self, world):
        names = world.robot.body_names
        self.world = world
        self.body = names.index("pelvis") if "pelvis" in names and world.robot.spec.floating else -1
        self.last_v: np.ndarray | None = None

    def read(self, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(quaternion w x y z, angular velocity, specific force), the vectors in the IMU frame."""
        if self.body < 0:
            quat, v, w = self.world.base_xform[3:], np.zeros(3), np.zeros(3)
        else:
            pose = self.world.state.body_q.numpy()[self.body].astype(np.float64)
            twist = self.world.state.body_qd.numpy()[self.body].astype(np.float64)
            quat, v, w = pose[3:], twist[:3], twist[3:]
        a = np.zeros(3) if self.last_v is None else (v - self.last_v) / dt
        self.last_v = v
        inv = qconj(quat)
        return (np.array([quat[3], *quat[:3]]), qrot(inv, w), qrot(inv, a - GRAVITY))


class ElasticBand:
    """unitree_mujoco's elastic band: the torso hangs from a spring-damper whose anchor is `drop` metres above its
    home position, with a rest length that carries the robot's whole weight there, so a robot whose controller does
    not balance it (arms only, a replay) hangs as on a gantry instead of falling. Applied every step as an external
    force on the torso (MuJoCo xfrc_applied), above the centre of mass, so the robot hangs upright."""

    def __init__(self, world, stiffness: float = 2000.0, damping: float = 200.0, drop: float = 1.0):
        mb = world.solver
        link = world.robot.body_names.index(BAND_LINK)
        newton_to_mj = np.full(mb.bodies, -1)
        newton_to_mj[mb.body_newton] = np.arange(mb.mj_model.nbody)[mb.body_mj]
        self.world, self.body, self.mj_body = world, link, int(newton_to_mj[link])
        self.xfrc = mb.batch.bind("xfrc_applied")
        mass = float(world.model.body_mass.numpy()[:world.bodies_per_world].sum())
        self.anchor = world.state.body_q.numpy()[link, :3].astype(np.float64) + [0.0, 0.0, drop]
        self.k, self.d = stiffness, damping
        self.length = drop - mass * 9.81 / stiffness

    def apply(self) -> None:
        p = self.world.state.body_q.numpy()[self.body, :3].astype(np.float64)
        v = self.world.state.body_qd.numpy()[self.body, :3].astype(np.float64)
        delta = self.anchor - p
        dist = float(np.linalg.norm(delta))
        u = delta / max(dist, 1e-9)
        pull = max(self.k * (dist - self.length) - self.d * float(v @ u), 0.0)   # a band pulls, never pushes
        self.xfrc[0, self.mj_body, :3] = pull * u


def rpy(wxyz: np.ndarray) -> np.ndarray:
    """Roll, pitch, yaw (ZYX Euler angles) of a unit quaternion w x y z."""
    w, x, y, z = wxyz
    return np.array([math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y)),
                     math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x)))),
                     math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))])


class UnitreeBridge:
    """A G1 world served on rt/lowstate and rt/lowcmd: `step()` applies the newest command, steps the physics and
    publishes the state; `run(stop)` does so paced to real time until `stop` is set."""

    def __init__(self, world, interface: str = "lo", domain: int = 1, band: bool = True,
                 mode_machine: int = hg.G1_MODE_MACHINE):
        from sim.bridges.dds import DdsLink

        self.world = world
        self.drive = G1Drive(world)
        self.imu = PelvisImu(world)
        self.band = ElasticBand(world) if band and BAND_LINK in world.robot.body_names and self.imu.body >= 0 else None
        self.stats = BridgeStats()
        self._cmd: Command | None = None
        self._applied: Command | None = None
        self._state = np.zeros((), dtype=hg.LOWSTATE_STRUCT)
        self._state["mode_machine"] = mode_machine
        self.link = DdsLink(interface, domain)
        self._writer = self.link.writer(hg.TOPIC_LOWSTATE, hg.LowState_)
        self._reader = self.link.reader(hg.TOPIC_LOWCMD, hg.LowCmd_, self._on_command)

    def _on_command(self, msg: hg.LowCmd_) -> None:
        """Cyclone's receive thread: check the CRC and the numbers, keep the command for the next step."""
        rec = hg.to_struct(msg)
        if hg.struct_crc(rec) != msg.crc:
            self.stats.bad_crc += 1
            self._describe("bad_crc", msg, rec)
            return
        m = rec["motor_cmd"]
        arrays = {k: m[k].astype(np.float64) for k in ("q", "dq", "tau", "kp", "kd")}
        on = m["mode"] != 0
        if not all(np.isfinite(a[on]).all() for a in arrays.values()):
            self.stats.nonfinite += 1
            self._describe("nonfinite", msg, rec)
            return
        mapped = np.zeros(hg.NUM_MOTORS, dtype=bool)
        mapped[self.drive.motors] = True
        self.stats.unmapped_enabled.update(np.flatnonzero(on & ~mapped).tolist())
        self.stats.commands += 1
        self._cmd = Command(mode=m["mode"].copy(), received=time.monotonic(), **arrays)

    def _describe(self, kind: str, msg, rec) -> None:
        """Keep what an ignored command was (up to 5): which motors carried non-finite numbers, and which writer
        sent it, so a report tells a peer's fault from a corrupted link."""
        if len(self.stats.rejected) >= 5:
            return
        m = rec["motor_cmd"]
        bad = {k: np.flatnonzero(~np.isfinite(m[k])).tolist() for k in ("q", "dq", "tau", "kp", "kd")}
        info = getattr(msg, "sample_info", None)
        writer = None
        if info is not None:
            try:
                writer = str(self._reader.get_matched_publication_data(info.publication_handle).key)
            except Exception:  # noqa: BLE001 - a writer already gone; the handle is still reported
                writer = None
        self.stats.rejected.append({"kind": kind, "sim_time": round(self.world.sim_time, 3),
                                    "crc": int(msg.crc), "crc_computed": int(hg.struct_crc(rec)),
                                    "nonfinite": {k: v for k, v in bad.items() if v},
                                    "modes": np.flatnonzero(m["mode"]).tolist(),
                                    "writer": writer, "publication_handle": getattr(info, "publication_handle", None)})

    def step(self) -> None:
        """Apply the newest valid command, advance one physics step, publish the state."""
        from sim.physics.world import step

        cmd = self._cmd
        if cmd is not None and cmd is not self._applied:
            self.drive.apply(cmd)
            self._applied = cmd
        if self.band is not None:
            self.band.apply()
        step(self.world)
        self.publish()

    def publish(self) -> None:
        rec, d = self._state, self.drive
        q, dq, ddq, tau = d.read()
        ms = rec["motor_state"]
        ms["q"][d.motors], ms["dq"][d.motors], ms["ddq"][d.motors], ms["tau_est"][d.motors] = q, dq, ddq, tau
        ms["mode"][d.motors] = d.mode
        quat, gyro, acc = self.imu.read(self.world.cfg.frame_dt)
        imu = rec["imu_state"]
        imu["quaternion"], imu["gyroscope"], imu["accelerometer"], imu["rpy"] = quat, gyro, acc, rpy(quat)
        rec["tick"] = int(round(self.world.sim_time * 1000)) & 0xFFFFFFFF
        rec["crc"] = hg.struct_crc(rec)
        self._writer.write(hg.from_struct(rec))
        self.stats.states += 1

    def run(self, stop: threading.Event) -> float:
        """Step paced to real time until `stop` is set; returns the simulated seconds per wall second."""
        from sim.live.threaded import RealTimePacer

        pacer = RealTimePacer(self.world.sim_time, "the bridge runs at {speed:.2f}x real time: this CPU is too slow "
                                                   "for the robot's state rate")
        t0, s0 = time.monotonic(), self.world.sim_time
        while not stop.is_set():
            self.step()
            wait = pacer.wait_after(self.world.sim_time)
            if wait > 0:
                stop.wait(wait)
        return (self.world.sim_time - s0) / max(time.monotonic() - t0, 1e-9)

    def close(self) -> None:
        self._writer = self._reader = None
        self.link.close()


def build_bridge_world(cfg):
    """The world `twin sim --bridge` serves: one world of the chosen robot, stepped at the state rate."""
    from sim.physics.world import WorldConfig, build_world

    return build_world(WorldConfig(scene=cfg.scene, robot=cfg.robot, scale=cfg.scale, robot_pose=cfg.robot_pose,
                                   worlds=cfg.worlds, solver=cfg.solver, device=cfg.device, frame_dt=1.0 / STATE_HZ,
                                   substeps=1, visuals=False))


def run_bridge(cfg, json_out: bool = False) -> int:
    """`twin sim --bridge unitree`: serve the simulated G1 until Ctrl-C, then report what was served."""
    from pathlib import Path

    from sim.bridges.dds import MAX_DOMAIN, check_interface
    from sim.physics.robots import get_robot
    from twin_kit import emit_json, info, quiet_warp

    if cfg.bridge != "unitree":
        raise InputError(f"--bridge {cfg.bridge}: the one bridge is unitree")
    if not Path(cfg.scene).exists():
        raise InputError(f"{cfg.scene}: no such scene bundle or mesh file")
    if cfg.worlds != 1 or cfg.teleop:
        raise InputError("--bridge serves one world on its own: drop --worlds and --teleop")
    if not get_robot(cfg.robot).name.startswith("g1"):
        raise InputError(f"--bridge unitree serves a G1 (--robot g1, g1_upper or g1_hands), not {cfg.robot}")
    check_interface(cfg.interface)
    if not 0 <= cfg.domain <= MAX_DOMAIN:
        raise InputError(f"--domain {cfg.domain}: DDS domain ids run from 0 to {MAX_DOMAIN}")
    quiet_warp()
    t0 = time.perf_counter()
    world = build_bridge_world(cfg)
    bridge = UnitreeBridge(world, cfg.interface, cfg.domain, band=cfg.band)
    d = bridge.drive
    band = "; the torso hangs from an elastic band" if bridge.band else ""
    info(f"serving {cfg.robot} on {hg.TOPIC_LOWSTATE} ({STATE_HZ} Hz) and {hg.TOPIC_LOWCMD}, interface "
         f"{cfg.interface}, DDS domain {cfg.domain}: {len(d.motors)} motors ({d.motors.min()}-{d.motors.max()}){band}; "
         f"built in {time.perf_counter() - t0:.1f} s; Ctrl-C stops")
    stop = threading.Event()
    started = time.monotonic()
    try:
        speed = bridge.run(stop)
    except KeyboardInterrupt:
        speed = world.sim_time / max(time.monotonic() - started, 1e-9)
    finally:
        bridge.close()
    s = bridge.stats
    wall = max(time.monotonic() - started, 1e-9)
    if s.unmapped_enabled:
        info(f"commands enabled motors that {cfg.robot} does not drive (ignored): {sorted(s.unmapped_enabled)}")
    info(f"stopped: {s.states} states in {wall:.1f} s ({s.states / wall:.0f} Hz), {s.commands} commands taken, "
         f"{s.bad_crc} with a bad CRC and {s.nonfinite} with NaN/inf ignored")
    if json_out:
        emit_json({"robot": cfg.robot, "interface": cfg.interface, "domain": cfg.domain, "motors": d.motors.tolist(),
                   "joints": d.names, "band": bridge.band is not None, "states": s.states,
                   "state_hz": round(s.states / wall, 1), "sim_time": round(world.sim_time, 3),
                   "speed": round(speed, 3), "commands": s.commands, "bad_crc": s.bad_crc, "nonfinite": s.nonfinite,
                   "rejected": s.rejected,
                   "unmapped_enabled": sorted(s.unmapped_enabled)})
    return 0
