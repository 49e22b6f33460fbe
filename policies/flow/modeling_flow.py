"""A π0-style flow-matching policy: a small action expert that denoises an action chunk.

The prefix (a proprioception token and every camera's image tokens, with 2D sine positions) runs once through
a transformer encoder. The action expert embeds the noisy chunk with the flow time (π0: concatenate the action
embedding and a sine embedding of the time, then an MLP) and, layer by layer, lets the action tokens attend
jointly to the prefix at the same depth and to each other (the prefix never attends to actions, so it is
computed once per chunk). Training: x_tau = tau * a + (1 - tau) * noise with tau drawn from π0's Beta(1.5, 1)
(favouring the noisy end) or uniformly; the model regresses the velocity a - noise (MSE, padding masked).
Inference: `num_steps` Euler steps from noise (tau = 0) to actions (tau = 1); with `prefix_actions`, real-time
chunking (policies.flow.rtc) splices the chunk onto the previous one.
With `aux_weight` > 0, training adds ACT's auxiliary object loss: one learned query per task object attends to
the final prefix and regresses the object's standardised xy (privileged poses, never an input). Without it,
demos whose joint states already say where the arm is going let the policy ignore its cameras: it then fits the
training chunks and fails in closed loop, where only the images say where the objects are. `state_dropout` (as
ACT's) replaces the state token of a share of training samples with a learned "unknown" token, to the same end.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from policies.blocks import MLP, Attention, EncoderLayer, drop_state, time_embedding
from policies.features import ACTION, ACTION_IS_PAD, IMAGES, STATE, PolicyFeatures, check_objects, object_targets
from policies.flow.configuration_flow import FlowConfig
from policies.flow.processor_flow import make_flow_processors
from policies.flow.rtc import guided_velocity, prefix_target
from policies.pretrained import PretrainedPolicy
from policies.vision.encoder import ImageEncoder, paired_consistency
from twin_kit import InputError


class ExpertLayer(nn.Module):
    """Action tokens attend to [prefix at this depth; action tokens], then a feed-forward (pre-norm)."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.norm_prefix, self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.mlp = MLP(dim, ff_dim, dropout, "gelu")
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        kv = torch.cat([self.norm_prefix(prefix), h], dim=1)
        x = x + self.drop(self.attn(h, kv, kv))
        return x + self.drop(self.mlp(self.norm2(x)))


class FlowPolicy(PretrainedPolicy):
    """Flow matching over the features' cameras and state; `forward` gives the training loss, `sample` the
    normalised (B, chunk_size, A) chunk."""

    name = "flow"
    config_class = FlowConfig

    def __init__(self, config: FlowConfig, features: PolicyFeatures, *, pretrained_backbone: bool = True):
        super().__init__(config, features, *make_flow_processors(config, features))
        c, d = config, config.dim
        self.images = None
        if features.cameras:
            self.images = ImageEncoder(len(features.cameras), d, c.image_size, c.backbone_width, c.backbone_layers,
                                       c.frozen_bn, c.backbone_weights if pretrained_backbone else None,
                                       c.backbone_norm, c.backbone, c.frozen_blocks)
        self.state_in = nn.Linear(features.state_dim, d)
        self.state_pos = nn.Parameter(torch.zeros(1, d))
        if c.state_dropout > 0:
            self.state_unknown = nn.Parameter(torch.zeros(d))
        self.prefix_layers = nn.ModuleList(EncoderLayer(d, c.heads, c.ff_dim, c.dropout, pre_norm=True,
                                                        activation="gelu") for _ in range(c.n_layers))
        self.action_in = nn.Linear(features.action_dim, d)
        self.time_mlp = nn.Sequential(nn.Linear(2 * d, d), nn.SiLU(), nn.Linear(d, d))
        self.action_pos = nn.Parameter(torch.zeros(c.chunk_size, d))
        self.expert = nn.ModuleList(ExpertLayer(d, c.heads, c.ff_dim, c.dropout) for _ in range(c.n_layers))
        self.out_norm = nn.LayerNorm(d)
        self.action_out = nn.Linear(d, features.action_dim)
        if c.aux_weight > 0:
            self.aux_query = nn.Parameter(torch.zeros(check_objects(features, c.aux_weight), d))
            self.aux_layer = ExpertLayer(d, c.heads, c.ff_dim, c.dropout)
            self.aux_head = nn.Linear(d, 2)
        for p in (self.state_pos, self.action_pos, *([self.aux_query] if c.aux_weight > 0 else [])):
            nn.init.normal_(p, std=0.02)

    def encode_prefix(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The prefix after each encoder layer: n_layers tensors (B, 1 + image tokens, dim)."""
        return self._prefix(batch)[0]

    def _prefix(self, batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """(the prefix after each encoder layer, the image tokens before the first)."""
        tokens = None
        x = self.state_in(batch[STATE])
        if self.config.state_dropout > 0 and self.training:   # some samples must be denoised without the state
            x = drop_state(x, self.state_unknown, self.config.state_dropout)
        x = x[:, None] + self.state_pos
        if self.images is not None:
            tokens, pos = self.images(batch[IMAGES])
            x = torch.cat([x, tokens + pos], dim=1)
        out = []
        for layer in self.prefix_layers:
            x = layer(x)
            out.append(x)
        return out, tokens

    def velocity(self, x: torch.Tensor, tau: torch.Tensor, prefix: list[torch.Tensor]) -> torch.Tensor:
        """The expert's velocity for noisy chunks x (B, T, A) at times tau (B,)."""
        c = self.config
        t = time_embedding(tau, c.dim, c.min_period, c.max_period)[:, None].expand(-1, x.shape[1], -1)
        h = self.time_mlp(torch.cat([self.action_in(x), t], dim=-1)) + self.action_pos
        for layer, p in zip(self.expert, prefix, strict=True):
            h = layer(h, p)
        return self.action_out(self.out_norm(h))

    def aux_loss(self, batch: dict[str, torch.Tensor], prefix: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the object queries' xy, read from the final prefix, against the batch's
        standardised object positions."""
        target = object_targets(batch, self.features, self.config.aux_weight)
        q = self.aux_query[None].expand(prefix.shape[0], -1, -1).to(prefix.dtype)
        return F.mse_loss(self.aux_head(self.aux_layer(q, prefix)), target)

    def sample_time(self, n: int, device: torch.device) -> torch.Tensor:
        """(n,) training times tau in [0, 0.999] (0 = noise): π0 draws its noise level s ~ Beta(a, b) and uses
        0.999 s + 0.001; tau = 1 - that. Uniform: tau ~ U[0, 0.999)."""
        if self.config.time_sampling == "uniform":
            return torch.rand(n, device=device) * 0.999
        beta = torch.distributions.Beta(torch.tensor(self.config.time_beta_a, device=device),
                                        torch.tensor(self.config.time_beta_b, device=device))
        return 1.0 - (0.999 * beta.sample((n,)) + 0.001)

    def forward(self, batch: dict[str, torch.Tensor], *, noise: torch.Tensor | None = None,
                tau: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Flow-matching loss; `noise` (B, T, A) and `tau` (B,) are drawn unless given (e.g. a fixed validation
        draw)."""
        if ACTION not in batch:
            raise InputError("flow training needs the action chunk in the batch")
        actions = batch[ACTION]
        if actions.shape[1:] != (self.config.chunk_size, self.features.action_dim):
            raise InputError(f"action chunk is {tuple(actions.shape[1:])}, the policy predicts "
                             f"{(self.config.chunk_size, self.features.action_dim)}")
        noise = torch.randn_like(actions) if noise is None else noise
        tau = self.sample_time(actions.shape[0], actions.device) if tau is None else tau
        tt = tau[:, None, None]
        prefix, img_tokens = self._prefix(batch)
        v = self.velocity(tt * actions + (1 - tt) * noise, tau, prefix)
        err = F.mse_loss(v, actions - noise, reduction="none")
        if ACTION_IS_PAD in batch:
            valid = (~batch[ACTION_IS_PAD]).unsqueeze(-1).to(err.dtype)
            loss = (err * valid).sum() / (valid.sum() * err.shape[-1]).clamp(min=1)
        else:
            loss = err.mean()
        logs = {}
        terms = []
        if self.config.aux_weight > 0 and self.training:   # a training signal only: validation scores actions
            aux = self.aux_loss(batch, prefix[-1])
            logs["aux"] = float(aux.detach())
            terms.append(self.config.aux_weight * aux)
        cons = paired_consistency(img_tokens, batch, self.config.consistency_weight, self.training)
        if cons is not None:
            logs["consistency"] = float(cons.detach())
            terms.append(self.config.consistency_weight * cons)
        if terms:
            logs = {"flow": float(loss.detach()), **logs}
            loss = loss + sum(terms)
        logs["loss"] = float(loss.detach())
        return loss, logs

    def sample(self, batch: dict[str, torch.Tensor], *, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None, prefix_actions: torch.Tensor | None = None,
               prefix_len: int = 0, num_steps: int | None = None, vjp: bool | None = None) -> torch.Tensor:
        """A normalised (B, chunk_size, A) chunk, integrated from `noise` (drawn with `generator` if not given).

        Real-time chunking: `prefix_actions` (B, P, A), normalised, are the previous chunk's actions for this
        chunk's first P steps, of which the first `prefix_len` are already committed; the chunk reproduces those
        and blends smoothly from the rest of the overlap into its own plan (see policies.flow.rtc).
        """
        state = batch[STATE]
        b, t, a = state.shape[0], self.config.chunk_size, self.features.action_dim
        prefix = self.encode_prefix(batch)
        x = noise if noise is not None else torch.randn(b, t, a, generator=generator, device=state.device)
        target = weights = None
        if prefix_actions is not None:
            target, weights = prefix_target(prefix_actions.to(x.dtype), prefix_len, t)
        steps = num_steps or self.config.num_steps
        use_vjp = self.config.rtc_vjp if vjp is None else vjp
        dt = 1.0 / steps
        for k in range(steps):  # a fixed number of steps: traces to a static graph
            tau = torch.full((b,), k * dt, device=x.device)

            def velocity(y: torch.Tensor, tau: torch.Tensor = tau) -> torch.Tensor:
                return self.velocity(y, tau, prefix)

            if target is None:
                v = velocity(x)
            else:
                v = guided_velocity(velocity, x, k * dt, target, weights, use_vjp, self.config.rtc_max_guidance)
            x = x + dt * v
        return x

    def predict_action_chunk(self, batch: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
        return self.sample(batch, **kwargs)

    @torch.no_grad()
    def infer(self, observation: dict[str, torch.Tensor], *, prefix_actions: torch.Tensor | None = None,
              **kwargs) -> torch.Tensor:
        """Raw observations -> (B, chunk, A) robot-unit actions; `prefix_actions` (robot units) as in `sample`."""
        state = observation.get(STATE)
        if prefix_actions is not None:
            prefix_actions = self.preprocessor.encode_action(torch.as_tensor(prefix_actions), state)
        batch = self.preprocessor(observation)
        return self.postprocessor(self.sample(batch, prefix_actions=prefix_actions, **kwargs), state)
