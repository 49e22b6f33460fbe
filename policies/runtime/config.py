"""`ServeConfig` (`twin serve`): which policy to serve, where, and to whom. Light to import (no torch, no
websockets): the CLI builds its options from this module alone."""
from __future__ import annotations

from dataclasses import dataclass

from twin_kit import opt, validate_config

RUNTIMES = ("onnx", "torch")


@dataclass
class ServeConfig:
    """Serve a trained policy over a websocket in openpi's wire format."""

    run: str = opt(help="run folder (runs/NAME, holding policy/), a saved policy folder, or an exported .onnx file",
                   positional=True)
    port: int = opt(8000, "TCP port (0: any free port, printed at start)", low=0, high=65535)
    host: str = opt("127.0.0.1", "address to listen on; anything but loopback needs --token",
                    pattern=r"[A-Za-z0-9.:\-]+", pattern_help="a host name or IP address")
    token: str | None = opt(None, "API key clients must send (header 'Authorization: Api-Key TOKEN', as "
                                  "openpi-client's api_key does); required off loopback",
                            pattern=r"[!-~]{8,256}", pattern_help="8 to 256 printable ASCII characters, no spaces")
    runtime: str = opt("onnx", "run the policy's ONNX export in onnxruntime (RUN/policy.onnx, or exported now into "
                               "a temporary file), or in PyTorch", choices=RUNTIMES)
    onnx: str | None = opt(None, "with --runtime onnx: the exported file to serve (default RUN/policy.onnx)")
    workers: int = opt(2, "inferences run at once (threads), so several clients are served together", low=1,
                       high=64)
    threads: int = opt(1, "intra-op threads of each inference (torch or onnxruntime)", low=1, high=256)
    device: str = opt("cpu", "torch device of the policy with --runtime torch (cpu, cuda)",
                      pattern=r"cpu|cuda(:\d+)?", pattern_help="cpu, cuda or cuda:N")
    seed: int = opt(0, "seed of the flow policy's noise when a request brings none", low=0, high=2**62)

    def __post_init__(self):
        validate_config(self)
