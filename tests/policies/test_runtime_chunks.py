"""The chunk broker of asynchronous inference: chunks arriving d steps late are spliced without a jump at the
seams (temporal ensembling, real-time chunking), matching ACT's own ensembler, and a real flow policy's RTC
inpainting reproduces the prefix the broker hands it."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from policies import PolicyFeatures, TemporalEnsembler, make_policy, prefix_weights
from policies.runtime.chunks import BrokerConfig, ChunkBroker
from twin_kit import InputError, torch_threads

H = 16


def trajectory(t) -> np.ndarray:
    """A smooth 2-joint trajectory (rad) at control steps t."""
    t = np.asarray(t, dtype=np.float64)
    return np.stack([np.sin(0.1 * t), 0.8 * np.cos(0.07 * t)], axis=-1)


def run_loop(broker: ChunkBroker, policy, delays, steps: int = 240):
    """The control loop's order each step: take chunks that arrived, execute an action, request if due. `policy`
    maps a Request to a chunk; chunk k arrives `delays[k]` steps after its request. Returns the executed actions
    (None while there is nothing to execute) and every chunk made."""
    in_flight, out, made = [], [], []
    delay = itertools.cycle(delays)
    for t in range(steps):
        for arrival, obs, chunk in [p for p in in_flight if p[0] == t]:
            broker.receive(chunk, obs, t)
            in_flight.remove((arrival, obs, chunk))
        out.append(broker.action(t))
        if broker.due(t):
            req = broker.request(t)
            chunk = policy(req)
            made.append(chunk)
            in_flight.append((t + next(delay), t, chunk))
    return out, made


def split(out):
    """(first executed step, executed actions (T, D) from there); fails if execution ever starved after it."""
    first = next(i for i, a in enumerate(out) if a is not None)
    assert all(a is not None for a in out[first:]), "the broker ran out of actions mid-run"
    return first, np.stack(out[first:])


def max_step(actions: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(actions, axis=0)).max(axis=-1)


def exact_piece(req):
    return trajectory(req.obs_step + np.arange(H))


@pytest.mark.parametrize("mode", ["ensemble", "rtc"])
@pytest.mark.parametrize("delays", [[1], [3], [4, 2, 3]])
def test_a_trajectory_split_into_late_chunks_is_executed_without_a_seam(mode, delays):
    broker = ChunkBroker(BrokerConfig(mode=mode, chunk_size=H, execute_steps=6, initial_delay=max(delays)))
    out, made = run_loop(broker, exact_piece, delays)
    first, actions = split(out)
    # each action executes at the step it was planned for: a chunk skips the actions of the steps that passed
    assert np.allclose(actions, trajectory(np.arange(first, len(out))), atol=1e-12)
    in_chunk = max(max_step(c).max() for c in made)
    seams = [s - first - 1 for s in broker.seams if s > first]
    assert len(seams) > 20 and max_step(actions)[seams].max() <= in_chunk + 1e-12


def disagreeing_policy(err: float, seed: int, rtc: bool):
    """A policy whose chunks disagree: each drifts off the trajectory by its own random slope (err rad over the
    chunk). With `rtc`, it inpaints the prefix the way the flow policy does (the RTC soft mask, applied to the
    clean chunk): the committed actions are the prefix, the rest of the overlap blends into its own plan."""
    rng = np.random.default_rng(seed)

    def policy(req):
        own = trajectory(req.obs_step + np.arange(H)) + rng.uniform(-err, err, 2) * np.arange(H)[:, None] / H
        if not rtc or req.prefix is None:
            return own
        w = prefix_weights(H, len(req.prefix), req.prefix_len).numpy()[:, None].astype(np.float64)
        target = np.zeros_like(own)
        target[:len(req.prefix)] = req.prefix
        return w * target + (1 - w) * own

    return policy


def test_rtc_splices_disagreeing_chunks_where_they_agree():
    delays = [3, 2, 3, 3]
    broker = ChunkBroker(BrokerConfig(mode="rtc", chunk_size=H, execute_steps=6, initial_delay=3))
    out, made = run_loop(broker, disagreeing_policy(0.5, 0, rtc=True), delays)
    first, actions = split(out)
    in_chunk = max(max_step(c).max() for c in made)
    seams = [s - first - 1 for s in broker.seams if s > first]
    assert len(seams) > 20 and max_step(actions)[seams].max() <= in_chunk + 1e-9
    # The same chunks without inpainting, switched at the same steps, jump at the seams.
    plain = ChunkBroker(BrokerConfig(mode="rtc", chunk_size=H, execute_steps=6, initial_delay=3))
    out, made = run_loop(plain, disagreeing_policy(0.5, 0, rtc=False), delays)
    first, actions = split(out)
    in_chunk = max(max_step(c).max() for c in made)
    assert max_step(actions)[[s - first - 1 for s in plain.seams if s > first]].max() > 1.5 * in_chunk


def test_ensembling_disagreeing_chunks_softens_the_seams():
    """Chunks that disagree, one every 3 steps: averaging them jumps less than switching outright to each new
    one (but, unlike rtc, not down to the chunks' own step: a chunk joining or leaving the mean shifts it)."""
    broker = ChunkBroker(BrokerConfig(mode="ensemble", chunk_size=H))
    out, made = run_loop(broker, disagreeing_policy(0.5, 1, rtc=False), [3])
    ens = max_step(split(out)[1]).max()
    plain = ChunkBroker(BrokerConfig(mode="rtc", chunk_size=H, execute_steps=3, initial_delay=3))
    out, _ = run_loop(plain, disagreeing_policy(0.5, 1, rtc=False), [3])
    switched = max_step(split(out)[1]).max()
    assert ens < 0.8 * switched, (ens, switched, max(max_step(c).max() for c in made))


def test_ensembling_matches_acts_temporal_ensembler():
    """A chunk every step, each a step late: the broker's action is ACT's own ensembler fed each chunk's actions
    from the step it arrived (its first is stale)."""
    coeff, delay = 0.3, 1
    broker = ChunkBroker(BrokerConfig(mode="ensemble", chunk_size=H, ensemble_coeff=coeff))
    rng = np.random.default_rng(2)
    out, made = run_loop(broker, lambda req: rng.normal(size=(H, 3)), [delay], steps=60)
    oracle = TemporalEnsembler(coeff, H - delay)
    want = [oracle.update(torch.from_numpy(c[None, delay:])).numpy()[0] for c in made[:60 - delay]]
    assert np.allclose(np.stack(out[delay:]), np.stack(want), atol=1e-12)


def test_sync_holds_while_a_chunk_is_computed_then_executes_it_from_the_start():
    broker = ChunkBroker(BrokerConfig(mode="sync", chunk_size=H, execute_steps=5))
    out, made = run_loop(broker, exact_piece, [3], steps=40)
    # request at 0, arrives at 3, executes actions 0..4 at steps 3..7; request at 8, arrives at 11, ...
    assert out[:3] == [None] * 3 and out[8:11] == [None] * 3
    assert np.allclose(np.stack(out[3:8]), made[0][:5]) and np.allclose(np.stack(out[11:16]), made[1][:5])


def test_delay_estimate_and_late_chunks():
    broker = ChunkBroker(BrokerConfig(mode="rtc", chunk_size=H, execute_steps=4, initial_delay=2, delay_window=3))
    req = broker.request(0)
    assert req.prefix is None and req.extras() == {}
    broker.receive(trajectory(np.arange(H)), 0, 5)   # 5 steps late: the first chunk starts at its action 5
    assert broker.delay == 5 and np.allclose(broker.action(5), trajectory(5))
    req = broker.request(6)
    assert req.prefix_len == 5 and np.allclose(req.prefix, trajectory(np.arange(6, H)))
    extras = req.extras()
    assert extras["prefix_actions"].dtype == np.float32 and extras["prefix_len"] == 5
    for t in range(6, 13):
        assert np.allclose(broker.action(t), trajectory(t))
    broker.receive(trajectory(np.arange(6, 6 + H)) + 1.0, 6, 13)  # later than estimated: switch on arrival
    assert np.allclose(broker.action(13), trajectory(13) + 1.0) and broker.seams[-1] == 13
    for d in (1, 1, 1):  # the window forgets the old delay
        broker.request(20 + d)
        broker.receive(trajectory(np.arange(H)), 20 + d, 21 + d)
    assert broker.delay == 1


def test_bad_chunks_are_refused():
    broker = ChunkBroker(BrokerConfig(mode="ensemble", chunk_size=4))
    with pytest.raises(InputError, match="no request in flight"):
        broker.receive(np.zeros((4, 2)), 0, 1)
    broker.request(0)
    with pytest.raises(InputError, match="in flight"):
        broker.request(1)
    with pytest.raises(InputError, match="NaN"):
        broker.receive(np.full((4, 2), np.nan), 0, 1)
    with pytest.raises(InputError, match="shape"):
        broker.receive(np.zeros((3, 2)), 0, 1)
    broker.cancel()
    assert broker.due(1) and broker.action(1) is None
    broker.request(1)
    broker.receive(np.zeros((4, 2)), 1, 2)
    broker.request(2)
    with pytest.raises(InputError, match="dimensions"):
        broker.receive(np.zeros((4, 3)), 2, 3)
    with pytest.raises(InputError, match="chunking"):
        BrokerConfig(mode="fast")


def test_a_real_flow_policys_rtc_inpainting_reproduces_the_brokers_prefix():
    """A tiny untrained flow policy (state only) sampled with the prefix the broker hands it: the committed
    actions come back as given, and the broker's switch to the new chunk is one of the chunk's own steps."""
    stats = {"observation.state": {"mean": [0.0] * 3, "std": [1.0] * 3},
             "action": {"mean": [0.0] * 3, "std": [0.5] * 3}}
    features = PolicyFeatures(state_names=["a", "b", "c"], action_names=["a", "b", "c"], stats=stats)
    tiny = dict(chunk_size=H, n_action_steps=8, dim=32, heads=2, ff_dim=64, n_layers=2, num_steps=8)
    with torch_threads(1):
        torch.manual_seed(0)
        policy = make_policy("flow", tiny, features).eval()
        obs = {"observation.state": torch.zeros(1, 3)}
        broker = ChunkBroker(BrokerConfig(mode="rtc", chunk_size=H, execute_steps=6, initial_delay=3))
        broker.request(0)
        first = policy.infer(obs, generator=torch.Generator().manual_seed(1))[0].double().numpy()
        broker.receive(first, 0, 3)
        executed = [broker.action(t) for t in range(3, 6)]
        req = broker.request(6)
        assert req.prefix_len == 3 and len(req.prefix) == H - 6
        extras = req.extras()
        new = policy.infer(obs, generator=torch.Generator().manual_seed(2), vjp=False,
                           prefix_actions=extras["prefix_actions"][None], prefix_len=extras["prefix_len"])
        new = new[0].double().numpy()
        free = policy.infer(obs, generator=torch.Generator().manual_seed(2))[0].double().numpy()
    assert np.abs(new[:3] - first[6:9]).max() < 1e-4  # the committed prefix, inpainted exactly
    assert np.abs(free[:3] - first[6:9]).max() > 0.05  # (without the prefix the policy would plan otherwise)
    executed += [broker.action(t) for t in range(6, 9)]
    broker.receive(new, 6, 8)                          # arrived early: waits for the committed actions to run
    executed += [broker.action(t) for t in range(9, 12)]
    assert broker.seams[-1] == 9 and np.allclose(executed[-3:], new[3:6])
    jump = np.abs(executed[6] - executed[5]).max()     # step 9 vs step 8: new[3] after first[8] ~ new[2]
    assert jump <= np.abs(np.diff(new, axis=0)).max() + 1e-4
