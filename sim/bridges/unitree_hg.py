"""Unitree's low-level humanoid messages (`unitree_hg`: G1, H1-2) as Cyclone DDS types, their CRC, the G1's motors.

The types carry the DDS type names, member names, member types and array sizes of the `unitree_hg/msg/dds_` IDL
that Unitree's SDKs (unitree_sdk2, unitree_sdk2_python) and robots use, with the same annotations (final,
sequential ids), so a peer speaking that IDL reads what these write. `LowCmd_` and `LowState_` end in a CRC that
the robot checks: Unitree's CRC-32 (polynomial 0x04C11DB7, register 0xFFFFFFFF, no reflection, no final xor,
i.e. CRC-32/MPEG-2) over the message laid out as its C struct (little-endian, natural alignment) read as 32-bit
words, every word but the last (the `crc` field itself), each word fed most significant bit first.

The G1's 29 motors are numbered as its URDF lists the joints: left leg 0-5, right leg 6-11, waist 12-14, left
arm 15-21, right arm 22-28 (slots 29-34 of the 35 are unused). `G1_JOINTS` gives Twin's (URDF) joint names in
that order; `g1_motor` also takes Unitree's names (`kRightElbow`, as LeRobot datasets recorded on the G1 spell
them, or `RightElbow`).
"""
# no `from __future__ import annotations`: cyclonedds reads the member types from the annotations at run time

import re
import zlib
from dataclasses import dataclass, field

import numpy as np
from cyclonedds.idl import Endianness, IdlStruct
from cyclonedds.idl.annotations import autoid, final
from cyclonedds.idl.types import array, float32, int16, uint8, uint32

from twin_kit import InputError

NUM_MOTORS = 35                 # motor slots in every unitree_hg message
TOPIC_LOWCMD = "rt/lowcmd"
TOPIC_LOWSTATE = "rt/lowstate"
G1_MODE_MACHINE = 5             # what a 29-dof G1 reports in LowState_.mode_machine (echoed back in LowCmd_)

G1_JOINTS = tuple(f"{side}_{j}_joint" for side in ("left", "right")
                  for j in ("hip_pitch", "hip_roll", "hip_yaw", "knee", "ankle_pitch", "ankle_roll")) + (
    "waist_yaw_joint", "waist_roll_joint", "waist_pitch_joint") + tuple(
    f"{side}_{j}_joint" for side in ("left", "right")
    for j in ("shoulder_pitch", "shoulder_roll", "shoulder_yaw", "elbow", "wrist_roll", "wrist_pitch", "wrist_yaw"))


# ---------------------------------------------------------------- fast plain-CDR encoding

_CDR_LE = b"\x00\x01\x00\x00"   # encapsulation header: plain CDR (XCDR1), little-endian


# The plain-CDR encoding of these two messages is their C struct's bytes but for one thing: CDR aligns each
# primitive, not each struct, so the first motor's mode byte sits right after the byte before it (offset
# `first`) and everything from that motor's q on sits 4 bytes earlier than in C (C offset `q`). That makes
# encoding and decoding a few byte copies instead of cyclonedds' generic per-member interpreter (0.7-0.9 ms for
# a LowState_ here); the tests hold both to give the same bytes.

def _cdr_payload(struct_bytes: bytes, first: int, q: int) -> bytes:
    return struct_bytes[:first] + struct_bytes[q:q + 1] + b"\x00" + struct_bytes[q + 4:]


def _struct_bytes(payload: bytes, first: int, q: int) -> bytes:
    return payload[:first] + bytes(q - first) + payload[first:first + 1] + bytes(3) + payload[first + 2:]


def _serialize(msg, buffer, endianness, use_version_2) -> bytes:
    """`msg.serialize(...)` through the C layout when the encoding is plain little-endian CDR (what Cyclone DDS
    writes for these final types); any other request takes cyclonedds' own encoder."""
    if buffer is not None or endianness not in (None, Endianness.Little) or use_version_2:
        return type(msg).__idl__.serialize(msg, buffer=buffer, endianness=endianness, use_version_2=use_version_2)
    _, _, _, _, first, q = _LAYOUT[msg.__idl_typename__]
    return _CDR_LE + _cdr_payload(to_struct(msg).tobytes(), first, q)


def _deserialize(cls, data: bytes, has_header: bool, use_version_2):
    """`cls.deserialize(...)` through the C layout for plain little-endian CDR; any other encoding (XCDR2, big
    endian, no header) takes cyclonedds' own decoder."""
    dtype, _, _, _, first, q = _LAYOUT[cls.__idl_typename__]
    size = dtype.itemsize - 4   # the CDR payload is 4 bytes shorter than the C struct
    if not has_header or bytes(data[:2]) != _CDR_LE[:2] or len(data) < 4 + size:
        return cls.__idl__.deserialize(data, has_header=has_header, use_version_2=use_version_2)
    raw = _struct_bytes(bytes(data[4:4 + size]), first, q)
    return from_struct(np.frombuffer(raw, dtype=dtype)[0])


# ---------------------------------------------------------------- the IDL types

@dataclass
@final
@autoid("sequential")
class MotorCmd_(IdlStruct, typename="unitree_hg.msg.dds_.MotorCmd_"):
    """One motor's command: torque = tau + kp (q - q_measured) + kd (dq - dq_measured); mode 1 enables it."""

    mode: uint8 = 0
    q: float32 = 0.0
    dq: float32 = 0.0
    tau: float32 = 0.0
    kp: float32 = 0.0
    kd: float32 = 0.0
    reserve: uint32 = 0


@dataclass
@final
@autoid("sequential")
class MotorState_(IdlStruct, typename="unitree_hg.msg.dds_.MotorState_"):
    """One motor's reading: position (rad), velocity, acceleration, estimated torque (N m), temperatures."""

    mode: uint8 = 0
    q: float32 = 0.0
    dq: float32 = 0.0
    ddq: float32 = 0.0
    tau_est: float32 = 0.0
    temperature: array[int16, 2] = field(default_factory=lambda: [0, 0])
    vol: float32 = 0.0
    sensor: array[uint32, 2] = field(default_factory=lambda: [0, 0])
    motorstate: uint32 = 0
    reserve: array[uint32, 4] = field(default_factory=lambda: [0] * 4)


@dataclass
@final
@autoid("sequential")
class IMUState_(IdlStruct, typename="unitree_hg.msg.dds_.IMUState_"):
    """The pelvis IMU: orientation quaternion (w, x, y, z), angular velocity and specific force in its frame."""

    quaternion: array[float32, 4] = field(default_factory=lambda: [1.0, 0.0, 0.0, 0.0])
    gyroscope: array[float32, 3] = field(default_factory=lambda: [0.0] * 3)
    accelerometer: array[float32, 3] = field(default_factory=lambda: [0.0] * 3)
    rpy: array[float32, 3] = field(default_factory=lambda: [0.0] * 3)
    temperature: int16 = 0


@dataclass
@final
@autoid("sequential")
class LowCmd_(IdlStruct, typename="unitree_hg.msg.dds_.LowCmd_"):
    """What a controller sends on rt/lowcmd."""

    mode_pr: uint8 = 0
    mode_machine: uint8 = 0
    motor_cmd: array[MotorCmd_, NUM_MOTORS] = field(default_factory=lambda: [MotorCmd_() for _ in range(NUM_MOTORS)])
    reserve: array[uint32, 4] = field(default_factory=lambda: [0] * 4)
    crc: uint32 = 0

    def serialize(self, buffer=None, endianness=None, use_version_2=None) -> bytes:
        return _serialize(self, buffer, endianness, use_version_2)

    @classmethod
    def deserialize(cls, data, has_header=True, use_version_2=None):
        return _deserialize(cls, data, has_header, use_version_2)


@dataclass
@final
@autoid("sequential")
class LowState_(IdlStruct, typename="unitree_hg.msg.dds_.LowState_"):
    """What the robot publishes on rt/lowstate."""

    version: array[uint32, 2] = field(default_factory=lambda: [0, 0])
    mode_pr: uint8 = 0
    mode_machine: uint8 = 0
    tick: uint32 = 0
    imu_state: IMUState_ = field(default_factory=IMUState_)
    motor_state: array[MotorState_, NUM_MOTORS] = field(
        default_factory=lambda: [MotorState_() for _ in range(NUM_MOTORS)])
    wireless_remote: array[uint8, 40] = field(default_factory=lambda: [0] * 40)
    reserve: array[uint32, 4] = field(default_factory=lambda: [0] * 4)
    crc: uint32 = 0

    def serialize(self, buffer=None, endianness=None, use_version_2=None) -> bytes:
        return _serialize(self, buffer, endianness, use_version_2)

    @classmethod
    def deserialize(cls, data, has_header=True, use_version_2=None):
        return _deserialize(cls, data, has_header, use_version_2)


# ---------------------------------------------------------------- the CRC

_REVERSE_BITS = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 of `data` (poly 0x04C11DB7, init 0xFFFFFFFF, MSB first, no final xor), at C speed: the
    reflected CRC-32 that zlib computes, run over bit-reversed bytes, is the same register mirrored."""
    reflected = zlib.crc32(data.translate(_REVERSE_BITS)) ^ 0xFFFFFFFF   # zlib inverts the result: undo it
    return int(f"{reflected:032b}"[::-1], 2)


def unitree_crc(struct_bytes: bytes) -> int:
    """Unitree's CRC of a message laid out as its C struct: every 32-bit little-endian word but the last, each
    taken most significant bit first."""
    n = len(struct_bytes) // 4 - 1
    words = np.frombuffer(struct_bytes, dtype="<u4", count=n)
    return crc32_mpeg2(words.astype(">u4").tobytes())


# C layouts (offsets as a C compiler lays the structs out, the sizes Unitree's SDK states: 1004 and 2092 bytes)
_MOTOR_CMD = np.dtype({"names": ["mode", "q", "dq", "tau", "kp", "kd", "reserve"],
                       "formats": ["u1", "<f4", "<f4", "<f4", "<f4", "<f4", "<u4"],
                       "offsets": [0, 4, 8, 12, 16, 20, 24], "itemsize": 28})
LOWCMD_STRUCT = np.dtype({"names": ["mode_pr", "mode_machine", "motor_cmd", "reserve", "crc"],
                          "formats": ["u1", "u1", (_MOTOR_CMD, NUM_MOTORS), ("<u4", 4), "<u4"],
                          "offsets": [0, 1, 4, 984, 1000], "itemsize": 1004})
_IMU = np.dtype({"names": ["quaternion", "gyroscope", "accelerometer", "rpy", "temperature"],
                 "formats": [("<f4", 4), ("<f4", 3), ("<f4", 3), ("<f4", 3), "<i2"],
                 "offsets": [0, 16, 28, 40, 52], "itemsize": 56})
_MOTOR_STATE = np.dtype({"names": ["mode", "q", "dq", "ddq", "tau_est", "temperature", "vol", "sensor", "motorstate",
                                   "reserve"],
                         "formats": ["u1", "<f4", "<f4", "<f4", "<f4", ("<i2", 2), "<f4", ("<u4", 2), "<u4",
                                     ("<u4", 4)],
                         "offsets": [0, 4, 8, 12, 16, 20, 24, 28, 36, 40], "itemsize": 56})
LOWSTATE_STRUCT = np.dtype({"names": ["version", "mode_pr", "mode_machine", "tick", "imu_state", "motor_state",
                                      "wireless_remote", "reserve", "crc"],
                            "formats": [("<u4", 2), "u1", "u1", "<u4", _IMU, (_MOTOR_STATE, NUM_MOTORS), ("u1", 40),
                                        ("<u4", 4), "<u4"],
                            "offsets": [0, 8, 9, 12, 16, 72, 2032, 2072, 2088], "itemsize": 2092})
_LAYOUT = {"unitree_hg.msg.dds_.LowCmd_": (LOWCMD_STRUCT, "motor_cmd", _MOTOR_CMD, MotorCmd_, 2, 4),
           "unitree_hg.msg.dds_.LowState_": (LOWSTATE_STRUCT, "motor_state", _MOTOR_STATE, MotorState_, 70, 72)}


def to_struct(msg) -> np.ndarray:
    """A LowCmd_ or LowState_ as a 0-d NumPy record laid out as Unitree's C struct (`record.tobytes()` is the
    struct's bytes, the crc field included as it stands)."""
    dtype, motors, motor_dtype, _, _, _ = _LAYOUT[msg.__idl_typename__]
    rec = np.zeros((), dtype=dtype)
    for k in dtype.names:
        if k == "imu_state":
            imu = rec[k]
            for f in _IMU.names:
                imu[f] = getattr(msg.imu_state, f)
        elif k == motors:
            m, items = rec[k], getattr(msg, k)
            for f in motor_dtype.names:
                m[f] = [getattr(x, f) for x in items]
        else:
            v = getattr(msg, k)
            rec[k] = np.frombuffer(v, dtype=np.uint8) if isinstance(v, (bytes, bytearray)) else v
    return rec


def from_struct(rec: np.ndarray):
    """The LowCmd_ or LowState_ (by the record's dtype) that a C-layout record `to_struct` made holds."""
    typename = next(t for t, lay in _LAYOUT.items() if lay[0] == rec.dtype)
    dtype, motors, motor_dtype, motor_cls, _, _ = _LAYOUT[typename]
    kwargs = {}
    for k in dtype.names:
        v = rec[k]
        if k == "imu_state":
            kwargs[k] = IMUState_(*(v[f].tolist() for f in _IMU.names))
        elif k == motors:
            kwargs[k] = [motor_cls(*row) for row in zip(*(v[f].tolist() for f in motor_dtype.names))]
        else:  # uint8 arrays come back as bytes, as cyclonedds' own decoder gives them
            kwargs[k] = v.tobytes() if v.dtype == np.uint8 and v.ndim else v.tolist()
    return (LowCmd_ if dtype == LOWCMD_STRUCT else LowState_)(**kwargs)


def _field_bytes(dtype: np.dtype) -> np.ndarray:
    """(itemsize,) bool: which bytes of a record of `dtype` belong to a field (the rest is C padding)."""
    used = np.zeros(dtype.itemsize, dtype=bool)
    for sub, offset, *_ in (dtype.fields or {}).values():
        base, count = (sub.base, int(np.prod(sub.shape))) if sub.shape else (sub, 1)
        inner = _field_bytes(base) if base.fields else np.ones(base.itemsize, dtype=bool)
        used[offset:offset + base.itemsize * count] = np.tile(inner, count)
    return used


_PADDING = {dt: ~_field_bytes(dt) for dt in (LOWCMD_STRUCT, LOWSTATE_STRUCT)}


def struct_crc(rec: np.ndarray) -> int:
    """Unitree's CRC of a C-layout record (`to_struct`), its padding bytes taken as zero (as a C struct that was
    zero-initialised has them, and as `to_struct` writes them): NumPy's copy of a record with padding leaves those
    bytes uninitialised, and a CRC over them would then differ from the receiver's (a rejected command)."""
    raw = np.frombuffer(rec.tobytes(), dtype=np.uint8).copy()
    raw[_PADDING[rec.dtype]] = 0
    return unitree_crc(raw.tobytes())


def message_crc(msg) -> int:
    """The CRC a LowCmd_ or LowState_ must carry (its `crc` field is not part of it)."""
    return struct_crc(to_struct(msg))


# ---------------------------------------------------------------- G1 motor names

def _unitree_name(joint: str) -> str:
    """Unitree's name of a G1 URDF joint: left_shoulder_pitch_joint -> LeftShoulderPitch."""
    return "".join(p.capitalize() for p in joint.removesuffix("_joint").split("_"))


_G1_INDEX = {**{j: i for i, j in enumerate(G1_JOINTS)}, **{_unitree_name(j): i for i, j in enumerate(G1_JOINTS)}}


def g1_motor(name: str) -> int:
    """The G1 motor index of joint `name`: Twin's URDF name (`right_elbow_joint`) or Unitree's (`kRightElbow`,
    `RightElbow`)."""
    key = re.sub(r"^k(?=[A-Z])", "", name)
    if key not in _G1_INDEX:
        raise InputError(f"{name!r} is not a joint of the 29-dof G1 (joints: {', '.join(G1_JOINTS)})")
    return _G1_INDEX[key]


def g1_joint_name(name: str) -> str:
    """Twin's (URDF) name of a G1 joint given either naming."""
    return G1_JOINTS[g1_motor(name)]
