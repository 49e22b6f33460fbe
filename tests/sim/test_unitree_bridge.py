"""sim.bridges: Unitree's unitree_hg messages (layout, CDR encoding, CRC), the G1's motor order, and the bridge
serving a simulated G1 on rt/lowstate / rt/lowcmd over loopback DDS, driven by raw messages from this process."""
from __future__ import annotations

import struct
import threading
import time

import numpy as np
import pytest
from support.unitree import start_bridge

from sim import G1_JOINTS, DdsLink, LowCmd_, LowState_, from_struct, g1_joint_name, g1_motor, message_crc, to_struct
from twin_kit import InputError

pytestmark = pytest.mark.realtime   # timing-sensitive: run alone, never beside another test (Makefile)

# Unitree's own description of the C structs (unitree_sdk2_python's crc.py packs them with these formats)
LOWCMD_FORMAT = "<2B2x" + "B3x5fI" * 35 + "5I"
LOWSTATE_FORMAT = "<2I2B2xI" + "13fh2x" + "B3x4f2hf7I" * 35 + "40B5I"


def crc_bitwise(words) -> int:
    """Unitree's crc32_core as its SDK describes it: register 0xFFFFFFFF, for each 32-bit word, most significant
    bit first: shift the register left, xor the polynomial 0x04C11DB7 if the bit shifted out was set, and xor it
    again if the data bit is set."""
    crc = 0xFFFFFFFF
    for word in words:
        for bit in range(31, -1, -1):
            top = crc >> 31
            crc = (crc << 1) & 0xFFFFFFFF
            if top:
                crc ^= 0x04C11DB7
            if (word >> bit) & 1:
                crc ^= 0x04C11DB7
    return crc


def f32(rng, n):
    return [float(np.float32(x)) for x in rng.normal(size=n)]


def random_cmd(rng) -> LowCmd_:
    m = LowCmd_(mode_pr=int(rng.integers(256)), mode_machine=int(rng.integers(256)),
                reserve=rng.integers(0, 2**32, 4).tolist(), crc=int(rng.integers(2**32)))
    for c in m.motor_cmd:
        c.mode, c.reserve = int(rng.integers(256)), int(rng.integers(2**32))
        c.q, c.dq, c.tau, c.kp, c.kd = f32(rng, 5)
    return m


def random_state(rng) -> LowState_:
    s = LowState_(version=rng.integers(0, 2**32, 2).tolist(), mode_pr=int(rng.integers(256)), mode_machine=5,
                  tick=int(rng.integers(2**32)), wireless_remote=rng.integers(0, 256, 40).tolist(),
                  reserve=rng.integers(0, 2**32, 4).tolist(), crc=int(rng.integers(2**32)))
    i = s.imu_state
    i.quaternion, i.gyroscope, i.accelerometer, i.rpy, i.temperature = f32(rng, 4), f32(rng, 3), f32(rng, 3), \
        f32(rng, 3), -7
    for m in s.motor_state:
        m.mode, m.motorstate = int(rng.integers(256)), int(rng.integers(2**32))
        m.q, m.dq, m.ddq, m.tau_est, m.vol = f32(rng, 5)
        m.temperature, m.sensor = rng.integers(-300, 300, 2).tolist(), rng.integers(0, 2**32, 2).tolist()
        m.reserve = rng.integers(0, 2**32, 4).tolist()
    return s


def packed_cmd(m: LowCmd_) -> bytes:
    values = [m.mode_pr, m.mode_machine]
    for c in m.motor_cmd:
        values += [c.mode, c.q, c.dq, c.tau, c.kp, c.kd, c.reserve]
    return struct.pack(LOWCMD_FORMAT, *values, *m.reserve, m.crc)


def packed_state(s: LowState_) -> bytes:
    i = s.imu_state
    values = [*s.version, s.mode_pr, s.mode_machine, s.tick, *i.quaternion, *i.gyroscope, *i.accelerometer, *i.rpy,
              i.temperature]
    for m in s.motor_state:
        values += [m.mode, m.q, m.dq, m.ddq, m.tau_est, *m.temperature, m.vol, *m.sensor, m.motorstate, *m.reserve]
    return struct.pack(LOWSTATE_FORMAT, *values, *s.wireless_remote, *s.reserve, s.crc)


# ---------------------------------------------------------------- messages and CRC (no DDS)

def test_crc_is_unitrees_crc32():
    from sim import unitree_crc
    from sim.bridges.unitree_hg import crc32_mpeg2

    assert crc32_mpeg2(b"123456789") == 0x0376E6E7          # the CRC-32/MPEG-2 catalogue check value
    assert crc_bitwise([0x31323334, 0x35363738]) == crc32_mpeg2(b"12345678")  # words fed MSB first = big endian
    rng = np.random.default_rng(0)
    for n in (1, 2, 9, 250):
        words = rng.integers(0, 2**32, n + 1, dtype=np.uint64).astype("<u4")
        assert unitree_crc(words.tobytes()) == crc_bitwise(words[:-1].tolist())   # the last word is the crc field
    cmd = random_cmd(rng)
    raw = packed_cmd(cmd)
    assert len(raw) == 1004 and message_crc(cmd) == crc_bitwise(struct.unpack("<250I", raw[:1000]))
    state = random_state(rng)
    raw = packed_state(state)
    assert len(raw) == 2092 and message_crc(state) == crc_bitwise(struct.unpack("<522I", raw[:2088]))
    before = message_crc(cmd)
    cmd.motor_cmd[25].q += 0.5
    assert message_crc(cmd) != before


def test_the_crc_ignores_c_padding_whatever_memory_holds_there():
    """NumPy's copy of a padded record leaves the padding uninitialised (seen: one corrupted command in a few
    hundred thousand): the CRC takes padding as zero, as the receiver rebuilds the struct."""
    from sim import LOWCMD_STRUCT, struct_crc

    cmd = LowCmd_(mode_machine=5)
    cmd.motor_cmd[25].q, cmd.motor_cmd[25].mode = 0.7, 1
    rec = to_struct(cmd)
    dirty = rec.copy()
    raw = dirty.view(np.uint8).reshape(-1) if dirty.ndim else np.frombuffer(dirty, np.uint8)
    raw.setflags(write=True)
    raw[2:4] = 0xAB                                                           # between mode_machine and motor 0
    raw[4 + 1:4 + 4] = 0xCD                                                   # after motor 0's mode byte
    assert dirty.tobytes() != rec.tobytes() and dirty.dtype == LOWCMD_STRUCT
    assert struct_crc(dirty) == struct_crc(rec) == message_crc(cmd)
    dirty["motor_cmd"]["q"][25] = 0.8                                         # a field still counts
    assert struct_crc(dirty) != struct_crc(rec)


def test_messages_have_unitrees_layout_and_encode_as_cyclonedds_does():
    rng = np.random.default_rng(1)
    assert LowCmd_.__idl_typename__ == "unitree_hg.msg.dds_.LowCmd_"
    assert LowState_.__idl_typename__ == "unitree_hg.msg.dds_.LowState_"
    assert list(LowCmd_.__annotations__) == ["mode_pr", "mode_machine", "motor_cmd", "reserve", "crc"]
    for make, pack, cls in ((random_cmd, packed_cmd, LowCmd_), (random_state, packed_state, LowState_)):
        for _ in range(3):
            msg = make(rng)
            assert to_struct(msg).tobytes() == pack(msg)
            generic = cls.__idl__.serialize(msg)                  # cyclonedds' own per-member encoder
            assert msg.serialize() == generic and len(generic) == len(pack(msg))
            assert cls.deserialize(generic) == cls.__idl__.deserialize(generic)
            assert from_struct(to_struct(msg)) == cls.deserialize(generic)
            v2 = msg.serialize(use_version_2=True)                # XCDR2: not the fast path, still right
            assert v2[:2] != generic[:2] and cls.deserialize(v2) == cls.__idl__.deserialize(generic)


def test_g1_motors_are_the_urdf_joint_order():
    import xml.etree.ElementTree as ET

    from sim import get_robot, model_path

    path = model_path(get_robot("g1"))
    moving = [j.get("name") for j in ET.parse(path).getroot().findall("joint") if j.get("type") != "fixed"]
    assert path.name == "g1_29dof_rev_1_0.urdf"
    assert tuple(moving) == G1_JOINTS and len(G1_JOINTS) == 29
    assert g1_motor("kRightElbow") == g1_motor("right_elbow_joint") == g1_motor("RightElbow") == 25
    assert g1_motor("left_hip_pitch_joint") == 0 and g1_motor("kWaistPitch") == 14 and g1_motor("kLeftWristYaw") == 21
    assert g1_joint_name("kRightWristYaw") == "right_wrist_yaw_joint"
    with pytest.raises(InputError, match="not a joint of the 29-dof G1"):
        g1_motor("kRightHandThumbBend")


# ---------------------------------------------------------------- the bridge, over DDS

class Peer:
    """A raw rt/lowstate reader and rt/lowcmd writer in this process (what a robot controller does)."""

    def __init__(self, domain: int):
        self.link = DdsLink("lo", domain)
        self.states: list[tuple[float, LowState_]] = []
        self.got = threading.Event()
        self.writer = self.link.writer("rt/lowcmd", LowCmd_)
        self.reader = self.link.reader("rt/lowstate", LowState_, self._on_state)

    def _on_state(self, s: LowState_) -> None:
        self.states.append((time.monotonic(), s))
        self.got.set()

    def last(self) -> LowState_:
        return self.states[-1][1]

    def command(self, q: dict[int, float], crc_error: int = 0) -> LowCmd_:
        cmd = LowCmd_(mode_machine=5)
        for k in range(22, 29):   # the right arm: hold 0 unless told
            c = cmd.motor_cmd[k]
            c.mode, c.q, c.kp, c.kd = 1, q.get(k, 0.0), 60.0, 1.5
        cmd.crc = (message_crc(cmd) + crc_error) & 0xFFFFFFFF
        return cmd

    def stream(self, cmd: LowCmd_, seconds: float, hz: float = 250.0) -> None:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            self.writer.write(cmd)
            time.sleep(1.0 / hz)


def test_bridge_serves_the_g1_and_obeys_only_good_commands(tmp_path):
    bridge = start_bridge(tmp_path, "g1_upper")
    peer = Peer(bridge.domain)
    try:
        assert peer.got.wait(240), bridge.err.read_text()[-3000:]
        time.sleep(1.0)
        n0, t0 = len(peer.states), time.monotonic()
        time.sleep(1.0)
        rate = (len(peer.states) - n0) / (time.monotonic() - t0)
        s = peer.last()
        assert s.crc == message_crc(s) and s.mode_machine == 5
        ticks = [st.tick for _, st in peer.states[-50:]]
        assert all(b > a for a, b in zip(ticks, ticks[1:]))                 # milliseconds of simulated time
        assert np.allclose(s.imu_state.quaternion, [1, 0, 0, 0], atol=1e-6)   # g1_upper: pelvis fixed upright
        assert np.allclose(s.imu_state.accelerometer, [0, 0, 9.81], atol=1e-3)
        print(f"rt/lowstate at {rate:.0f} Hz")
        assert rate > 50, rate   # it streams; its 500 Hz on a quiet machine is a bench figure, not a test's

        peer.stream(peer.command({25: 0.6, 22: -0.2}), 1.5)                 # right elbow, right shoulder pitch
        q = np.array([m.q for m in peer.last().motor_state])
        assert abs(q[25] - 0.6) < 0.05 and abs(q[22] + 0.2) < 0.05, q[22:29]
        assert np.abs(q[[23, 24, 26, 27, 28]]).max() < 0.05 and np.abs(q[:22]).max() == 0.0   # locked: read 0
        tau = peer.last().motor_state[25].tau_est
        assert tau != 0.0                                                     # holding the forearm up

        peer.stream(peer.command({25: -0.4, 22: -0.2}, crc_error=1), 0.8)   # a bad CRC: ignored
        assert abs(peer.last().motor_state[25].q - 0.6) < 0.03
        nan = peer.command({25: float("nan"), 22: -0.2})
        peer.stream(nan, 0.5)                                                 # NaN with a good CRC: ignored
        assert abs(peer.last().motor_state[25].q - 0.6) < 0.03
    finally:
        peer.link.close()
        report = bridge.stop()
    assert report["motors"] == list(range(22, 29)) and report["joints"][3] == "right_elbow_joint"
    assert report["bad_crc"] > 10 and report["nonfinite"] > 10 and report["commands"] > 100
    assert report["band"] is False and report["speed"] > 0.8
