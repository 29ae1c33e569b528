"""HIRO and the shared RL plumbing (common/rl): the off-policy correction recovers
the goal that generated a batch of actions, goal re-basing keeps s + g fixed, TD3's
target equals a hand computation, the replay buffer survives a checkpoint, the
point-mass worlds behave as App. B's layouts, and a killed training resumes to the
same result, replay included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common import runs
from common.rl import evaluate as EV
from common.rl.replay import Replay
from common.rl.td3 import TD3
from common.rl.wrappers import goal_reward, goal_transition, rebase_goals, time_limited
from papers.hiro import envs as E
from papers.hiro import experiment as X
from papers.hiro.method import candidate_log_likelihood, goal_candidates, relabel_goals


class KnownLowPolicy(torch.nn.Module):
    """mu(features, g) = tanh(W [features, g] + b), fixed weights."""

    def __init__(self, feat=1, d=2, a=3, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = torch.randn(feat + d, a, generator=gen)
        self.b = torch.randn(a, generator=gen) * 0.1

    def forward(self, x):
        return torch.tanh(x @ self.w + self.b)


def _segment(B=64, c=10, d=2, feat=1, seed=0):
    """Random states, features and a true goal per transition; the actions are the known
    policy's under the goal re-based along the segment (eq. 2)."""
    gen = torch.Generator().manual_seed(seed)
    states = torch.cumsum(0.3 * torch.randn(B, c + 1, d, generator=gen), 1)
    feats = torch.randn(B, c, feat, generator=gen)
    true = 1.5 * (2 * torch.rand(B, d, generator=gen) - 1)
    pol = KnownLowPolicy(feat, d)
    goals = rebase_goals(states[:, :c], true)
    actions = pol(torch.cat([feats, goals], -1))
    return pol, states, feats, actions, true, gen


def test_log_likelihood_argmax_recovers_the_generating_goal():
    """Among 10 candidates with the true goal hidden at a random position, the argmax of
    -1/2 sum ||a - mu(s, g~_i)||^2 is the true goal in every transition."""
    B, K = 64, 10
    pol, states, feats, actions, true, gen = _segment(B)
    cands = 1.5 * (2 * torch.rand(B, K, 2, generator=gen) - 1)
    where = torch.randint(0, K, (B,), generator=gen)
    cands[torch.arange(B), where] = true
    ll = candidate_log_likelihood(pol, states, feats, actions, cands)
    assert ll.shape == (B, K)
    assert torch.equal(ll.argmax(1), where)
    assert torch.allclose(ll[torch.arange(B), where], torch.zeros(B), atol=1e-10)


def test_relabel_replaces_a_stale_goal_by_the_one_that_explains_the_actions():
    """The stored goal is stale (random); the segment ended where the true goal pointed
    (s_{t+c} - s_t = g*), so the correction must return g*.  A no-op correction (returning
    the stored goal, the bug of one public port) fails this test."""
    B = 64
    pol, states, feats, actions, true, gen = _segment(B)
    states[:, -1] = states[:, 0] + true          # the segment reached the true goal
    stale = 1.5 * (2 * torch.rand(B, 2, generator=gen) - 1)
    rng = torch.full((2,), 1.5)
    new, best = relabel_goals(pol, states, feats, actions, stale, rng, 8, gen)
    assert torch.allclose(new, true, atol=1e-6)
    assert (best == 1).all()                     # the s_{t+c} - s_t candidate
    assert not torch.allclose(stale, true, atol=1e-2)
    # and when the stored goal is the generating one, it is kept
    kept, best = relabel_goals(pol, states, feats, actions, true, rng, 8, gen)
    assert torch.allclose(kept, true) and ((best == 0) | (best == 1)).all()


def test_candidates_are_goal_delta_and_clipped_gaussians():
    gen = torch.Generator().manual_seed(3)
    start, end = torch.zeros(500, 2), torch.full((500, 2), 0.4)
    goal = torch.full((500, 2), -1.0)
    rng = torch.tensor([1.5, 1.5])
    c = goal_candidates(start, end, goal, rng, 8, gen)
    assert c.shape == (500, 10, 2)
    assert torch.equal(c[:, 0], goal) and torch.allclose(c[:, 1], end - start)
    assert c.abs().max() <= 1.5
    s = c[:, 2:].reshape(-1, 2)
    inner = s[(s.abs() < 1.5).all(1)]
    assert abs(inner.mean().item() - 0.4) < 0.1      # centred at s_{t+c} - s_t
    assert 0.5 < s.std().item() < 0.8                # std 0.5 x goal range, shrunk by the clip


def test_goal_rebasing_keeps_s_plus_g_fixed():
    gen = torch.Generator().manual_seed(1)
    s = torch.cumsum(torch.randn(5, 11, 2, generator=gen), 1)
    g = torch.randn(5, 2, generator=gen)
    goals = [g]
    for i in range(10):
        goals.append(goal_transition(s[:, i], goals[-1], s[:, i + 1]))
    goals = torch.stack(goals, 1)
    assert torch.allclose(s + goals, (s[:, :1] + g[:, None]).expand_as(s), atol=1e-5)
    assert torch.allclose(rebase_goals(s, g), goals, atol=1e-5)
    # the low-level reward is minus the distance still to go
    r = goal_reward(s[:, 0], g, s[:, 1])
    assert torch.allclose(r, -torch.linalg.vector_norm(goals[:, 1], dim=-1), atol=1e-5)


def test_td3_target_matches_hand_computation():
    torch.manual_seed(0)
    low, high = torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0])
    t = TD3(3, low, high, hidden=(8, 8), gamma=0.9, policy_noise=0.2, noise_clip=0.5, reward_scale=0.1)
    with torch.no_grad():  # make the target nets differ from the online ones
        for p in list(t.actor_target.parameters()) + list(t.critic_target.parameters()):
            p.add_(0.1 * torch.randn_like(p))
    B = 6
    gen = torch.Generator().manual_seed(5)
    r, s2 = torch.randn(B, generator=gen), torch.randn(B, 3, generator=gen)
    done = torch.tensor([0., 1., 0., 0., 1., 0.])
    eps = 4 * torch.randn(B, 2, generator=gen)       # large, so that the clip acts
    y = t.target_q(r, s2, done, eps)

    # by hand: tanh actor into the box, clipped noise in half-range units, box clip
    net = t.actor_target.net
    h = torch.relu(s2 @ net[0].weight.T + net[0].bias)
    h = torch.relu(h @ net[2].weight.T + net[2].bias)
    mu = (high + low) / 2 + (high - low) / 2 * torch.tanh(h @ net[4].weight.T + net[4].bias)
    noise = torch.clamp(0.2 * eps, -0.5, 0.5) * (high - low) / 2
    a2 = torch.max(torch.min(mu + noise, high), low)
    qs = []
    for m in range(2):  # each critic on its own
        x = torch.cat([s2, a2], 1)
        W, b = t.critic_target.weights, t.critic_target.biases
        for i in range(3):
            x = x @ W[i][m] + b[i][m, 0]
            if i < 2:
                x = torch.relu(x)
        qs.append(x[:, 0])
    expect = 0.1 * r + 0.9 * (1 - done) * torch.min(qs[0], qs[1])
    assert torch.allclose(y, expect, atol=1e-6)
    assert (noise.abs() <= 0.5 * (high - low) / 2 + 1e-7).all() and (noise.abs() > 0).any()


def test_td3_delays_actor_and_target_updates():
    torch.manual_seed(0)
    t = TD3(3, [-1.0], [1.0], hidden=(8, 8), policy_delay=2, tau=0.5)
    gen = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randn(16, 3), "action": torch.rand(16, 1), "reward": torch.randn(16),
             "next_obs": torch.randn(16, 3), "done": torch.zeros(16)}
    a0 = [p.clone() for p in t.actor.parameters()]
    c0 = [p.clone() for p in t.critic.parameters()]
    tc0 = [p.clone() for p in t.critic_target.parameters()]
    t.update(batch, gen)
    assert all(torch.equal(a, p) for a, p in zip(a0, t.actor.parameters()))          # delayed
    assert not all(torch.equal(c, p) for c, p in zip(c0, t.critic.parameters()))
    assert all(torch.equal(c, p) for c, p in zip(tc0, t.critic_target.parameters()))
    t.update(batch, gen)
    assert not all(torch.equal(a, p) for a, p in zip(a0, t.actor.parameters()))
    # Polyak: target = (1 - tau) old target + tau online
    for old, new, net in zip(tc0, t.critic_target.parameters(), t.critic.parameters()):
        assert torch.allclose(new, 0.5 * old + 0.5 * net, atol=1e-6)


def test_replay_ring_sampling_and_state_dict_round_trip(tmp_path):
    spec = {"obs": (3,), "action": (2,), "reward": ()}
    rb = Replay(10, spec)
    for k in range(3):  # 15 transitions into 10 slots: the 5 oldest are overwritten
        n = 5
        v = torch.arange(5 * k, 5 * k + n, dtype=torch.float32)
        rb.add(obs=v[:, None].repeat(1, 3), action=v[:, None].repeat(1, 2), reward=v)
    assert len(rb) == 10 and rb.ptr == 5
    assert sorted(rb.data["reward"].tolist()) == list(range(5, 15))
    b = rb.sample(64, torch.Generator().manual_seed(0))
    assert torch.equal(b["obs"][:, 0], b["reward"]) and torch.equal(b["action"][:, 1], b["reward"])
    torch.save(rb.state_dict(), tmp_path / "rb.pt")
    rb2 = Replay(10, spec)
    rb2.load_state_dict(torch.load(tmp_path / "rb.pt", weights_only=True))
    assert (rb2.ptr, rb2.size) == (rb.ptr, rb.size)
    for k in spec:
        assert torch.equal(rb2.data[k], rb.data[k])
    s1, s2 = rb.sample(32, torch.Generator().manual_seed(7)), rb2.sample(32, torch.Generator().manual_seed(7))
    assert all(torch.equal(s1[k], s2[k]) for k in spec)
    # a half-full buffer checkpoints only what it holds
    half = Replay(1000, spec)
    half.add(obs=torch.ones(4, 3), action=torch.ones(4, 2), reward=torch.ones(4))
    assert half.state_dict()["data"]["obs"].shape == (4, 3)
    with pytest.raises(KeyError):
        half.add(obs=torch.ones(1, 3), action=torch.ones(1, 2))


def _scripted(env, moves):
    env.reset()
    info = None
    for a, n in moves:
        for _ in range(n):
            *_, info = env.step(np.tile(a, (env.num_envs, 1)))
    return info


def test_push_world_is_solved_by_going_left_and_jammed_by_pushing_up():
    env = E.make_env("point_push", 2, 100, evaluation=True)
    info = _scripted(env, [((-1, 0), 7), ((0, 1), 7), ((1, 0), 8), ((0, 1), 10)])
    assert info["success"].all() and env.block[0, 0] > 0.5       # block pushed right
    info = _scripted(env, [((0, 1), 30), ((1, 0), 10), ((0, 1), 10)])
    assert not info["success"].any() and env.block[0, 1] > 1.5   # block jammed in the target's cell
    maze = E.make_env("point_maze", 2, 100, evaluation=True)
    assert not _scripted(maze, [((0, 1), 30)])["success"].any()  # the wall blocks the direct way
    assert _scripted(maze, [((1, 0), 15), ((0, 1), 15), ((-1, 0), 15)])["success"].all()



def test_ant_worlds_without_mujoco_raise_naming_the_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mujoco", None)   # `import mujoco` now fails
    monkeypatch.delitem(sys.modules, "papers.hiro.ant", raising=False)
    with pytest.raises(Exception, match=r"pip install mujoco"):
        E.make_env("ant_maze", 1, 500)


def test_body_cannot_slip_past_the_block_corner_or_tunnel_through_a_wall():
    """Last stop's exploit: the block nudged 0.02 to the right left a gap that a point
    (no body) slipped through into the target's dead end.  A body of half-width r needs
    the block pushed at least 2r out of the target's column; the point still slips."""
    def nudge_then_up(radius):
        env = E.PointMassNav("push", 1, radius=radius, evaluation=True)
        env.reset()
        env.block[:] = (0.02, 1.0)
        env.pos[:] = (0.02 - 0.5 - radius, 1.0)           # touching the block's left face
        for _ in range(10):                                # straight up along it
            *_, info = env.step(np.array([(0.0, 1.0)]))
        return env, info

    env, info = nudge_then_up(0.1)
    assert env.pos[0, 1] == pytest.approx(1.5 - 0.1)      # stopped by the wall above cell (-1, 1)
    assert env.block[0] == pytest.approx((0.02, 1.0)) and not info["success"].any()
    point, info = nudge_then_up(0.0)
    assert point.pos[0, 1] > 2.0 and info["success"].all()  # what a point did
    # one fast step straight up from the start: the end point (0, 2) is free, the path is not
    maze = E.PointMassNav("maze", 3, speed=2.0, radius=0.1)
    maze.reset()
    maze.pos[:] = [(0.0, 0.0), (2.0, 0.0), (0.0, 2.0)]
    maze.step(np.array([(0, 1), (0, 1), (7, 0)], dtype=float))  # the last: 2 per step, clipped action
    assert maze.pos[0] == pytest.approx((0.0, 0.5 - 0.1))      # stopped at the wall, not through it
    assert maze.pos[1] == pytest.approx((2.0, 2.0))            # a free corridor: the full step
    assert maze.pos[2] == pytest.approx((2.0, 2.0))
    fast = E.PointMassNav("maze", 1, speed=7.0, radius=0.1)
    fast.reset()
    fast.step(np.array([(1.0, 0.0)]))
    assert fast.pos[0] == pytest.approx((2.5 - 0.1, 0.0))     # the far wall, not beyond it


def test_pushing_moves_the_block_by_the_body_overlap_and_walls_stop_it():
    env = E.PointMassNav("push", 2, speed=0.15, radius=0.1)
    env.reset()
    gaps = []
    for _ in range(12):  # straight up from (0, 0): contact after 0.4 - 0.1 = 0.3 of travel
        env.step(np.array([(0.0, 1.0), (0.0, 0.0)]))
        gaps.append(env.block[0, 1] - 0.5 - (env.pos[0, 1] + 0.1))
    assert env.block[1] == pytest.approx((0.0, 1.0)) and env.pos[1] == pytest.approx((0.0, 0.0))
    assert env.block[0, 1] == pytest.approx(2.0)                # jammed at the dead end's top wall
    assert env.pos[0, 1] == pytest.approx(2.0 - 0.5 - 0.1)      # and the body stops against it
    assert min(gaps) > -1e-9 and gaps[-1] == pytest.approx(0.0)  # the body never enters the block
    before = env.block.copy()
    env.pos[0] = (0.0, 1.4)
    env.step(np.array([(1.0, 0.0), (0.0, 0.0)]))                # sideways: no contact, no push
    assert np.array_equal(env.block, before)


def test_evaluate_reads_success_at_the_final_step_only():
    """A policy that passes through the target and leaves it again is not a success."""
    env = time_limited(E.make_env("point_maze", 3, 50, evaluation=True), 50)

    def route(leave):  # right, up, left into the target (t = 45); then away from it or not
        return lambda obs, t: np.tile((1, 0) if t < 15 else (0, 1) if t < 30 else
                                      (-1, 0) if t < 45 or not leave else (1, 0), (3, 1))

    passed = EV.rollout(env, route(True), record=None)
    assert passed["success"].sum() == 0 and passed["steps"] == 50
    assert EV.evaluate(env, route(False))["success"] == 1.0
    seen = []
    EV.rollout(env, route(True), record=lambda obs, t: seen.append(np.linalg.norm(obs[0, :2] - (0, 2))))
    assert min(seen) < 0.625 < seen[-1]  # it was inside the disc before the last step


def _ctx(path):
    path.mkdir(parents=True, exist_ok=True)
    return runs.RunContext(experiment=None, profile="smoke", seed=0, device=torch.device("cpu"),
                           run_dir=path, config_text="cfg", quiet=True)


TINY_S = dict(envs=(("push", "point_push"),), methods=("hiro",), steps=60, horizon=30, eval_every=30,
              eval_episodes=3, speed=0.15)
TINY_A = dict(c=5, goal_range=1.5, hidden=(8, 8), buffer=500, batch_size=4, low_noise=0.1, high_noise=0.1,
              gamma=0.99, tau=0.005, actor_lr=1e-3, critic_lr=1e-3, high_reward_scale=0.1, candidates=10,
              start_steps=10, pretrain_steps=30)


def test_killed_training_resumes_to_the_same_result(tmp_path, monkeypatch):
    """An exception in the 2nd of 3 evaluation intervals, then a fresh call in the same run
    folder: the checkpoint (networks, optimisers, both replay buffers, generators, global
    RNG) makes the result equal to an uninterrupted run's."""
    from common import device

    device.seed_everything(0)
    ref = X.train_pair(_ctx(tmp_path / "ref"), "push", "point_push", "hiro", TINY_S, TINY_A)
    calls = {"n": 0}
    real = X.evaluate

    def crashing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    ctx = _ctx(tmp_path / "victim")
    monkeypatch.setattr(X, "evaluate", crashing)
    device.seed_everything(0)
    with pytest.raises(KeyboardInterrupt):
        X.train_pair(ctx, "push", "point_push", "hiro", TINY_S, TINY_A)
    assert (tmp_path / "victim" / "checkpoints").exists()
    monkeypatch.setattr(X, "evaluate", real)
    device.seed_everything(123)  # a restarted process: the checkpoint restores the RNGs
    resumed = X.train_pair(ctx, "push", "point_push", "hiro", TINY_S, TINY_A)
    assert "resumed after epoch 1" in (tmp_path / "victim" / "log.txt").read_text()
    assert resumed.pop("seconds") > 0 and ref.pop("seconds") > 0   # wall-clock differs
    assert resumed == ref and resumed["relabel"]["sampled"] > 0


def test_video_round_trip(tmp_path):
    import imageio.v2 as imageio

    from common.rl.video import save_video

    frames = [np.full((8, 10, 3), 40 * i, dtype=np.uint8) for i in range(4)]
    path = save_video(frames, tmp_path / "roll.gif", fps=10)
    back = imageio.mimread(path)
    assert len(back) == 4 and back[0].shape[:2] == (8, 10)
    assert [int(np.asarray(f)[..., :3].mean()) for f in back] == [0, 40, 80, 120]


def test_pretraining_phases_train_only_their_level():
    """Fig. 4's pre-training ablation: "pretrain" episodes fill and train only the low level
    (on uniformly random goals); "frozen" episodes train only the high level and leave
    the low level's weights and replay untouched."""
    env = time_limited(E.make_env("point_maze", 1, 20), 20)
    ag = X.make_agent("pretrain", env.unwrapped, TINY_A, "cpu")
    gen = torch.Generator().manual_seed(0)
    steps = X.train_episode("pretrain", ag, env, gen, 0, 5, "cpu", phase="pretrain")
    assert steps == 20 and len(ag.low_replay) == 20 and len(ag.high_replay) == 0 and ag.low.updates > 0
    low = {k: v.clone() for k, v in ag.low.actor.state_dict().items()}
    n_low, upd = len(ag.low_replay), ag.low.updates
    X.train_episode("pretrain", ag, env, gen, 0, 5, "cpu", phase="frozen")
    assert len(ag.high_replay) == 20 // TINY_A["c"] and ag.high.updates > 0
    assert len(ag.low_replay) == n_low and ag.low.updates == upd
    assert all(torch.equal(v, ag.low.actor.state_dict()[k]) for k, v in low.items())
    assert ag.correction  # the correction stays on (harmless with a fixed low level)
