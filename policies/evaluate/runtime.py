"""The policy as evaluation runs it: raw observations (NumPy, robot units, uint8 frames) -> action chunks, in
PyTorch or through onnxruntime on the exported graph, with the same arguments either way.

`chunks(obs, noise, prefix, prefix_len)`: obs maps `observation.state` (B, D) and each camera key (B, H, W, 3);
noise (B, T, A) is the flow policy's starting noise (ignored by ACT); prefix (B, P, A), robot units, the previous
chunk's actions for this chunk's first P steps, of which prefix_len are committed (real-time chunking; flow).
Returns (B, T, A) float32 robot-unit actions. Inference runs on `threads` threads, so a given batch shape gives
bit-identical results in every process. With a prefix, PyTorch adds the RTC paper's ΠGDM term when the policy's
`rtc_vjp` is on; the exported graph never does (it has no autograd).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from twin_kit import InputError, one_line


class TorchRuntime:
    """A loaded `PretrainedPolicy` (eval mode) on `device`. On the CPU the policy's convolution weights are put
    channels-last, oneDNN's fast layout: the same actions (1e-5), a 16-observation MobileNetV2 batch 1.7x faster
    here. The layout change is made on the policy object it is given."""

    name = "torch"

    def __init__(self, policy, threads: int = 1, device: str = "cpu"):
        import torch

        self.policy, self.threads, self.device = policy, int(threads), device
        if torch.device(device).type == "cpu":
            policy.to(memory_format=torch.channels_last)
        self.kind = policy.name
        self.vjp = bool(getattr(policy.config, "rtc_vjp", False))

    def chunks(self, obs: dict[str, np.ndarray], noise: np.ndarray | None = None, prefix: np.ndarray | None = None,
               prefix_len: int = 0) -> np.ndarray:
        import torch

        from twin_kit import torch_threads

        batch = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in obs.items()}
        kw = {}
        if self.kind == "flow":
            if noise is not None:
                kw["noise"] = torch.from_numpy(np.ascontiguousarray(noise, dtype=np.float32)).to(self.device)
            if prefix is not None:
                kw.update(prefix_actions=torch.from_numpy(np.ascontiguousarray(prefix, dtype=np.float32))
                          .to(self.device), prefix_len=int(prefix_len), vjp=self.vjp)
        with torch_threads(self.threads):
            out = self.policy.infer(batch, **kw)
        return out.float().cpu().numpy()


class OnnxRuntime:
    """An exported policy graph (`twin export-policy --onnx`) in an onnxruntime session on the CPU."""

    name = "onnx"

    def __init__(self, path: str | Path, threads: int = 1):
        from policies.evaluate.export import read_onnx_meta

        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError("--runtime onnx needs onnxruntime: pip install onnxruntime") from None
        self.path = Path(path)
        self.meta = read_onnx_meta(self.path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for unreadable graphs
            raise InputError(f"{self.path}: onnxruntime cannot load it ({one_line(e)})") from None
        self.kind = self.meta["type"]
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.chunk_size = int(self.meta["config"]["chunk_size"])

    def chunks(self, obs: dict[str, np.ndarray], noise: np.ndarray | None = None, prefix: np.ndarray | None = None,
               prefix_len: int = 0) -> np.ndarray:
        feed = {k: np.ascontiguousarray(obs[k]) for k in self.inputs if k in obs}
        if self.kind == "flow":
            b = len(obs["observation.state"])
            a = len(self.meta["features"]["action_names"])
            t = self.chunk_size
            feed["noise"] = (np.zeros((b, t, a), np.float32) if noise is None
                             else np.ascontiguousarray(noise, dtype=np.float32))
            feed["prefix_actions"], feed["prefix_weights"] = rtc_inputs(prefix, prefix_len, b, t, a)
        feed["observation.state"] = feed["observation.state"].astype(np.float32, copy=False)
        return self.session.run(["action"], feed)[0]


def rtc_inputs(prefix: np.ndarray | None, prefix_len: int, batch: int, chunk: int,
               action_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The exported flow graph's prefix inputs: actions (B, T, A) padded with zeros past the prefix, and the
    real-time chunking weights (T,) (all zero: no prefix, the plain sample)."""
    from policies.flow.rtc import prefix_weights

    actions = np.zeros((batch, chunk, action_dim), np.float32)
    weights = np.zeros(chunk, np.float32)
    if prefix is not None:
        p = prefix.shape[1]
        actions[:, :p] = prefix
        weights = prefix_weights(chunk, p, int(prefix_len)).numpy().astype(np.float32)
    return actions, weights
