"""A trained policy as a server answers with it: one observation keyed by the dataset's feature names in, one
action chunk [H, D] in robot units out, through the same runtimes `twin eval` uses (PyTorch, or the ONNX export
in onnxruntime).

`load_served(source, runtime)` takes a run folder, a saved policy folder or an exported `.onnx` file. With the
onnx runtime a run's own `policy.onnx` is used (refused if exported from other weights), else the policy is
exported now into a temporary file (onnxruntime holds the graph in memory, so the file need not outlive it).

`ServedPolicy.metadata()` lists every input with its shape and dtype, the action shape, policy type, fps and
chunk length, so a client in any language can build a request; `check(obs)` refuses a malformed one in one line
(missing key, wrong shape or dtype, NaN); `infer(obs)` is both. Flow policies also take optional `noise` (H, D)
and a real-time chunking prefix (`prefix_actions` (P, D), robot units, of which `prefix_len` are committed);
without `noise` a fresh draw is made from the policy's seeded generator. Other keys (a `prompt`, ...) are
ignored. Nothing here imports training code.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import numpy as np

from policies.features import STATE
from policies.runtime.config import RUNTIMES
from twin_kit import InputError, info

FORMAT = "twin-policy-server"
FORMAT_VERSION = 1
NOISE, PREFIX, PREFIX_LEN = "noise", "prefix_actions", "prefix_len"


class ServedPolicy:
    """A loaded runtime (`policies.evaluate.runtime`'s TorchRuntime or OnnxRuntime) with its features and config,
    answering one observation at a time. Safe to call from several threads at once."""

    def __init__(self, runtime, features, config, source: str, seed: int = 0):
        self.runtime, self.features, self.config, self.source = runtime, features, config, str(source)
        self.kind = runtime.kind
        self.horizon, self.action_dim = int(config.chunk_size), features.action_dim
        self.inputs: dict[str, tuple[tuple[int, ...], np.dtype]] = {STATE: ((features.state_dim,),
                                                                            np.dtype(np.float32))}
        for key, (h, w) in features.cameras.items():
            self.inputs[key] = ((int(h), int(w), 3), np.dtype(np.uint8))
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()

    def metadata(self) -> dict:
        """The server's first frame: what to send and what comes back (plain types, msgpack-ready)."""
        def spec(shape, dtype, names=None):
            out = {"shape": list(shape), "dtype": np.dtype(dtype).name}
            return {**out, "names": list(names)} if names else out

        obs = {k: spec(shape, dtype, self.features.state_names if k == STATE else None)
               for k, (shape, dtype) in self.inputs.items()}
        optional, extra = {}, {}
        if self.kind == "flow":
            optional = {NOISE: spec((self.horizon, self.action_dim), np.float32),
                        PREFIX: spec((-1, self.action_dim), np.float32), PREFIX_LEN: {"shape": [], "dtype": "int"}}
            # PyTorch adds the RTC paper's ΠGDM term to a prefix when the config asks; the ONNX graph never does
            extra = {"rtc_vjp": bool(getattr(self.runtime, "vjp", False))}
        return {"format": FORMAT, "version": FORMAT_VERSION, "policy_type": self.kind, "runtime": self.runtime.name,
                "fps": int(self.features.fps), "chunk_length": self.horizon,
                "n_action_steps": int(self.config.n_action_steps), "robot_type": self.features.robot_type,
                "observation": obs, "optional": optional,
                "action": spec((self.horizon, self.action_dim), np.float32, self.features.action_names),
                **extra, "config": self.config.to_json()}

    def check(self, obs) -> dict:
        """The request's arrays, checked against `inputs` (and the flow extras); InputError in one line."""
        if not isinstance(obs, dict):
            raise InputError(f"a request is a map of observation keys to arrays, got {type(obs).__name__}")
        out = {}
        for key, (shape, dtype) in self.inputs.items():
            if key not in obs:
                raise InputError(f"missing {key} (the policy reads {', '.join(self.inputs)})")
            out[key] = _array(key, obs[key], dtype, shape)
        if not np.isfinite(out[STATE]).all():
            raise InputError(f"{STATE} holds NaN or inf")
        if self.kind == "flow":
            out.update(self._flow_extras(obs))
        return out

    def _flow_extras(self, obs: dict) -> dict:
        h, d = self.horizon, self.action_dim
        extras = {}
        if obs.get(NOISE) is not None:
            extras[NOISE] = _array(NOISE, obs[NOISE], np.dtype(np.float32), (h, d), finite=True)
        if obs.get(PREFIX) is not None:
            prefix = _array(PREFIX, obs[PREFIX], np.dtype(np.float32), None, finite=True)
            if prefix.ndim != 2 or prefix.shape[1] != d or not 1 <= prefix.shape[0] <= h:
                raise InputError(f"{PREFIX}: shape {prefix.shape}, expected (P, {d}) with 1 <= P <= {h}")
            n = obs.get(PREFIX_LEN, 0)
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) \
                    or not 0 <= int(n) <= len(prefix):
                raise InputError(f"{PREFIX_LEN}: must be an integer in [0, {len(prefix)}], got {n!r}")
            extras[PREFIX], extras[PREFIX_LEN] = prefix, int(n)
        return extras

    def predict(self, checked: dict) -> np.ndarray:
        """(H, D) float32 robot-unit actions of a request that passed `check`."""
        obs = {k: v[None] for k, v in checked.items() if k in self.inputs}
        noise = prefix = None
        if self.kind == "flow":
            noise = checked.get(NOISE)
            if noise is None:
                with self._rng_lock:
                    noise = self._rng.standard_normal((self.horizon, self.action_dim), dtype=np.float32)
            noise = noise[None]
            if PREFIX in checked:
                prefix = checked[PREFIX][None]
        actions = self.runtime.chunks(obs, noise, prefix, checked.get(PREFIX_LEN, 0))
        return np.ascontiguousarray(actions[0], dtype=np.float32)

    def infer(self, obs: dict) -> np.ndarray:
        """One observation dict -> its (H, D) action chunk in robot units."""
        return self.predict(self.check(obs))


def _array(key: str, value, dtype: np.dtype, shape: tuple | None, finite: bool = False) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        want = f"a {dtype.name} array" + (f" of shape {shape}" if shape is not None else "")
        raise InputError(f"{key}: expected {want} (openpi's msgpack NumPy encoding), got {type(value).__name__}")
    if value.dtype != dtype:
        raise InputError(f"{key}: dtype {value.dtype}, expected {dtype.name}")
    if shape is not None and value.shape != tuple(shape):
        raise InputError(f"{key}: shape {value.shape}, expected {tuple(shape)}")
    if finite and not np.isfinite(value).all():
        raise InputError(f"{key} holds NaN or inf")
    return value


def load_served(source: str | Path, runtime: str = "onnx", onnx: str | Path | None = None, threads: int = 1,
                device: str = "cpu", seed: int = 0) -> ServedPolicy:
    """The policy of `source` (run folder, saved policy folder or exported .onnx file) in `runtime`."""
    from policies.configuration import config_from_json
    from policies.evaluate.runtime import TorchRuntime
    from policies.features import PolicyFeatures
    from policies.registry import config_class

    if runtime not in RUNTIMES:
        raise InputError(f"runtime {runtime!r}: choose {' or '.join(RUNTIMES)}")
    source = Path(source)
    if source.suffix == ".onnx" and not source.is_dir():
        if runtime != "onnx":
            raise InputError(f"{source}: an ONNX export runs in --runtime onnx; give the run folder for torch")
        onnx = source
    if runtime == "torch":
        from policies.evaluate.runs import resolve_run
        from policies.pretrained import load_policy

        _, policy_dir = resolve_run(source)
        policy = load_policy(policy_dir, device).eval()
        rt = TorchRuntime(policy, threads, device)
        return ServedPolicy(rt, policy.features, policy.config, policy_dir, seed)
    rt, label = _onnx_runtime(source, onnx, threads)
    config = config_from_json(config_class(rt.kind), rt.meta["config"], str(rt.path))
    return ServedPolicy(rt, PolicyFeatures.from_json(rt.meta["features"]), config, label, seed)


def _onnx_runtime(source: Path, onnx: str | Path | None, threads: int):
    """(onnxruntime session, what it serves): the given export, the run's own one (checked against its weights),
    or a fresh export into a temporary file."""
    from policies.evaluate.export import export_onnx, read_onnx_meta
    from policies.evaluate.runs import ONNX_FILE, resolve_run, weights_digest
    from policies.evaluate.runtime import OnnxRuntime

    if onnx is not None:
        if not Path(onnx).is_file():
            raise InputError(f"--onnx {onnx}: no such file")
        return OnnxRuntime(onnx, threads), str(onnx)
    run, policy_dir = resolve_run(source)
    path = run / ONNX_FILE
    if path.is_file():
        meta = read_onnx_meta(path)
        if meta["weights_sha256"] != weights_digest(policy_dir):
            raise InputError(f"{path}: was exported from other weights than {policy_dir}'s; export again "
                             f"(twin export-policy {source} --onnx)")
        return OnnxRuntime(path, threads), str(path)
    from policies.pretrained import load_policy

    policy = load_policy(policy_dir, "cpu")
    info(f"{source} has no {ONNX_FILE}: exporting the {policy.name} policy into a temporary file "
         f"(twin export-policy {source} --onnx keeps one)")
    with tempfile.TemporaryDirectory(prefix="twin-serve-") as tmp:
        out = export_onnx(policy, Path(tmp) / ONNX_FILE, weights_digest(policy_dir))["path"]
        return OnnxRuntime(out, threads), f"{policy_dir} (exported at start)"
