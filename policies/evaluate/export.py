"""`twin export-policy RUN --onnx`: the policy's whole inference graph, processors included, as one ONNX file.

In: `observation.state` (B, D) float32 in robot units and `observation.images.<camera>` (B, H, W, 3) uint8 per
camera, at the dataset's frame size. Out: `action` (B, chunk, A) float32 in robot units. Normalisation
constants, the image resize and the ImageNet normalisation are inside the graph. The flow policy also takes
`noise` (B, chunk, A), the Euler integration's start (fixed `num_steps` steps, so ONNX and PyTorch agree to
rounding), and the real-time chunking prefix: `prefix_actions` (B, chunk, A) robot units (zeros past the
prefix) and `prefix_weights` (chunk,) (`policies.flow.rtc.prefix_weights`; all zero: no prefix). The RTC
paper's ΠGDM term needs autograd and is left out (`vjp=False`). The batch dimension is dynamic.

The file's metadata holds the policy type, config, features and the SHA-256 of the weights it was made from
(`read_onnx_meta`), so a runtime needs nothing else and `twin eval --runtime onnx` refuses a stale export.
Written through a temporary file; checked against PyTorch on random inputs before it is renamed into place.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from policies.features import STATE
from twin_kit import InputError, atomic_output, check_output_file, emit_json, info, one_line

FORMAT = "twin-policy-onnx"
FORMAT_VERSION = 1
FLOW_INPUTS = ("noise", "prefix_actions", "prefix_weights")
PARITY_TOL = 1e-4


class PolicyGraph(nn.Module):
    """The exported computation: positional inputs in `input_names` order -> (B, chunk, A) robot-unit actions."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy
        self.kind = policy.name
        self.keys = [STATE, *policy.features.camera_keys]

    @property
    def input_names(self) -> list[str]:
        return self.keys + (list(FLOW_INPUTS) if self.kind == "flow" else [])

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        obs = dict(zip(self.keys, inputs[:len(self.keys)], strict=True))
        if self.kind != "flow":
            return self.policy.infer(obs)
        noise, prefix_actions, prefix_weights = inputs[len(self.keys):]
        return self._flow(obs, noise, prefix_actions, prefix_weights)

    def _flow(self, obs, noise, prefix_actions, prefix_weights) -> torch.Tensor:
        """`FlowPolicy.sample` with the prefix as tensors: v' = v + W (Y - (x + (1 - tau) v)) / (1 - tau),
        which is v itself where W is 0 (policies.flow.rtc.guided_velocity without the Jacobian term)."""
        from policies.flow.rtc import guided_velocity

        p = self.policy
        batch = p.preprocessor(obs)
        prefix = p.encode_prefix(batch)
        target = p.preprocessor.encode_action(prefix_actions, obs[STATE])
        weights = prefix_weights.reshape(1, -1, 1)
        x = noise
        steps = p.config.num_steps
        dt = 1.0 / steps
        for k in range(steps):
            tau = torch.full((x.shape[0],), k * dt, device=x.device)

            def velocity(y: torch.Tensor, tau: torch.Tensor = tau) -> torch.Tensor:
                return p.velocity(y, tau, prefix)

            x = x + dt * guided_velocity(velocity, x, k * dt, target, weights, False, p.config.rtc_max_guidance)
        return p.postprocessor(x, obs[STATE])


def example_inputs(policy, batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    """Random inputs of the graph's shapes and types (frames uint8, the rest float32; no prefix)."""
    g = torch.Generator().manual_seed(seed)
    f = policy.features
    out = [torch.randn(batch, f.state_dim, generator=g)]
    out += [torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8, generator=g) for h, w in f.cameras.values()]
    if policy.name == "flow":
        t = policy.config.chunk_size
        out += [torch.randn(batch, t, f.action_dim, generator=g), torch.zeros(batch, t, f.action_dim),
                torch.zeros(t)]
    return out


@contextlib.contextmanager
def _quiet():
    """torch.onnx prints progress and warnings (to stdout, too): keep stdout for --json and stderr for errors."""
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def export_onnx(policy, path: str | Path, weights_sha256: str = "") -> dict:
    """Write `policy` (a loaded PretrainedPolicy) to the ONNX file `path`; returns {path, inputs, max_abs_error,
    seconds}. Refuses (InputError) an export whose outputs differ from PyTorch's by more than 1e-4."""
    try:
        import onnx
        import onnxruntime  # noqa: F401 - checked here, used by the parity check below
    except ImportError:
        raise InputError("ONNX export needs onnx, onnxscript and onnxruntime: pip install onnx onnxscript "
                         "onnxruntime") from None
    t0 = time.perf_counter()
    policy = policy.to("cpu").eval()
    graph = PolicyGraph(policy).eval()
    names = graph.input_names
    args = tuple(example_inputs(policy))
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = tuple(None if n == "prefix_weights" else {0: batch} for n in names)
    path = Path(path)
    with atomic_output(path) as tmp:
        try:
            with torch.no_grad(), _quiet():
                program = torch.onnx.export(graph, args, input_names=names, output_names=["action"],
                                            dynamic_shapes=(dynamic,), dynamo=True, optimize=True, verbose=False)
                program.save(str(tmp))
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - the exporter raises many types; any failure is one line
            raise InputError(f"ONNX export of the {policy.name} policy failed ({_summary(e)})") from None
        model = onnx.load(str(tmp))
        meta = {"twin.format": FORMAT, "twin.version": str(FORMAT_VERSION), "twin.type": policy.name,
                "twin.config": json.dumps(policy.config.to_json()),
                "twin.features": json.dumps(policy.features.to_json()), "twin.inputs": json.dumps(names),
                "twin.weights_sha256": weights_sha256}
        for k, v in meta.items():
            model.metadata_props.add(key=k, value=v)
        onnx.save(model, str(tmp))
        err = parity_error(policy, tmp)
        if err > PARITY_TOL:
            raise InputError(f"ONNX export differs from PyTorch by {err:.2e} (> {PARITY_TOL:g}); not written")
    return {"path": str(path), "inputs": names, "max_abs_error": err, "seconds": round(time.perf_counter() - t0, 2)}


def _summary(e: Exception) -> str:
    """The exporter's own one-line cause (its messages open with pages of advice)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for i, ln in enumerate(lines[:-1]):
        if ln.startswith("## Exception summary"):
            return one_line(lines[i + 1])
    return one_line(e)


def parity_error(policy, onnx_path: Path, batch: int = 3) -> float:
    """Largest |ONNX - PyTorch| over a random batch of another size than the export's example."""
    from policies.evaluate.runtime import OnnxRuntime

    graph = PolicyGraph(policy).eval()
    args = example_inputs(policy, batch, seed=1)
    with torch.no_grad():
        want = graph(*args).numpy()
    rt = OnnxRuntime(onnx_path)
    feed = {n: a.numpy() for n, a in zip(graph.input_names, args, strict=True)}
    got = rt.session.run(["action"], feed)[0]
    return float(np.abs(got - want).max())


def read_onnx_meta(path: str | Path) -> dict:
    """{type, config, features, inputs, weights_sha256} of an exported policy file (one-line errors)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file (write it with twin export-policy RUN --onnx)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf and onnx raise several types for a bad file
        raise InputError(f"{path}: not an ONNX file ({one_line(e)})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("twin.format") != FORMAT:
        raise InputError(f"{path}: not a Twin policy export (no twin.format metadata)")
    if props.get("twin.version") != str(FORMAT_VERSION):
        raise InputError(f"{path}: Twin policy export version {props.get('twin.version')} is not supported "
                         f"({FORMAT_VERSION})")
    try:
        return {"type": props["twin.type"], "config": json.loads(props["twin.config"]),
                "features": json.loads(props["twin.features"]), "inputs": json.loads(props["twin.inputs"]),
                "weights_sha256": props.get("twin.weights_sha256", "")}
    except (KeyError, ValueError) as e:
        raise InputError(f"{path}: Twin metadata is incomplete ({one_line(e)})") from None


def run_export_policy(cfg, json_out: bool = False) -> int:
    """`twin export-policy`: check, load, export, report."""
    from policies.evaluate.runs import ONNX_FILE, resolve_run, weights_digest
    from policies.pretrained import load_policy

    if not cfg.onnx:
        raise InputError("choose a format: --onnx (the only one so far)")
    run, policy_dir = resolve_run(cfg.run)
    out = check_output_file(cfg.out or run / ONNX_FILE, (".onnx",), "--out")
    policy = load_policy(policy_dir)
    info(f"exporting the {policy.name} policy of {policy_dir} ({policy.num_parameters():,} parameters) -> {out}")
    res = export_onnx(policy, out, weights_digest(policy_dir))
    res.update(policy=policy.name, policy_dir=str(policy_dir), bytes=out.stat().st_size)
    info(f"wrote {out} ({res['bytes'] / 1e6:.1f} MB) in {res['seconds']} s; |ONNX - PyTorch| <= "
         f"{res['max_abs_error']:.1e} on a random batch")
    if json_out:
        emit_json(res)
    return 0
