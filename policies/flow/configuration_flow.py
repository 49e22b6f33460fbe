"""`FlowConfig`: the flow-matching policy's settings. Defaults are π0's recipe at CPU size: a half-width ResNet-18
on 96 px frames, a 4-layer prefix encoder and a 4-layer action expert 128 wide, Beta(1.5, 1) time sampling
biased to the noisy end, 10 Euler steps, chunks of 20 actions (2 s at 10 fps)."""
from __future__ import annotations

from dataclasses import dataclass

from policies.configuration import PolicyConfig
from twin_kit import opt


@dataclass
class FlowConfig(PolicyConfig):
    """Flow matching: an action expert that turns noise into an action chunk in a few Euler steps."""

    n_layers: int = opt(4, "layers of the prefix encoder and of the action expert (one expert layer attends to "
                           "the prefix at the same depth)", low=1, high=48)
    num_steps: int = opt(10, "Euler steps from noise to actions at inference", low=1, high=1000)
    time_sampling: str = opt("beta", "training time distribution: beta (π0: Beta(1.5, 1), favouring noisy "
                                     "times) or uniform", choices=("beta", "uniform"))
    time_beta_a: float = opt(1.5, "Beta time sampling: first shape parameter", low=0.0, low_open=True, high=100)
    time_beta_b: float = opt(1.0, "Beta time sampling: second shape parameter", low=0.0, low_open=True, high=100)
    min_period: float = opt(4e-3, "shortest period of the time embedding", low=0.0, low_open=True, high=10)
    max_period: float = opt(4.0, "longest period of the time embedding", low=0.0, low_open=True, high=1e4)
    rtc_vjp: bool = opt(True, "real-time chunking also applies the RTC paper's ΠGDM guidance through the "
                              "model's Jacobian (a backward pass per step); off: inpainting alone, ONNX-exportable")
    rtc_max_guidance: float = opt(5.0, "ΠGDM guidance weight clip (the RTC paper's beta)", low=0.0, high=100.0)
    dropout: float = opt(0.0, "dropout in the transformer", low=0.0, high=0.9)
    aux_weight: float = opt(0.0, "weight of an auxiliary training loss: one query per task object reads the prefix "
                                 "and regresses the object's xy (the dataset's privileged.object_poses), so the image "
                                 "tokens must locate the objects; without it a flow policy can learn its chunks from "
                                 "proprioception alone (0: off; unused at run time)", low=0.0, high=1e3)
