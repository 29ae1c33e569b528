"""ProcCity courier task (papers/city_nav) and V-trace (common/rl/vtrace.py): the
forward rule (the neighbour within 30 degrees, else a no-op), shaping only on a new
minimum distance, the goal reward, connectivity, a deterministic renderer, V-trace
against a hand computation and against n-step returns on-policy, the agents' shapes
and the frozen-transfer split, and a killed training run resuming exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.rl import vtrace as V
from papers.city_nav import city as C
from papers.city_nav import method as M
from papers.city_nav.env import FORWARD, LEFT, LEFT3, RIGHT, CourierVecEnv

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_city():
    c = C.make_city(3, blocks=3, block_m=60.0, landmarks=4)
    return c, C.render_cache(c, size=32)


# ------------------------------------------------------------------ graph and forward rule
def test_forward_table_picks_neighbour_within_30_degrees():
    # a star: centre 0, neighbours at bearings 0, 25, 90, 200 degrees (10 m away)
    bearings = np.deg2rad([0.0, 25.0, 90.0, 200.0])
    pos = np.concatenate([[[0.0, 0.0]], 10 * np.stack([np.cos(bearings), np.sin(bearings)], 1)])
    nb = [np.array([1, 2, 3, 4])] + [np.array([0])] * 4
    fwd = C.forward_table(pos, nb)
    heads = np.arange(16) * 22.5
    for h, deg in enumerate(heads):
        diffs = np.abs((deg - np.rad2deg(bearings) + 180) % 360 - 180)
        want = 1 + int(diffs.argmin()) if diffs.min() <= 30 else -1
        assert fwd[0, h] == want, (deg, fwd[0, h], want)
    # e.g. heading 22.5: bearing 25 (2.5 degrees off) beats bearing 0; heading 135: none within 30
    assert fwd[0, 1] == 2 and fwd[0, 6] == -1 and fwd[0, 9] == 4


def test_env_forward_is_noop_without_neighbour_and_turns_by_bins(small_city):
    city, cache = small_city
    env = CourierVecEnv(city, cache, num_envs=16, seed=0, episode_steps=1000)
    env.reset()
    env.node[:] = np.arange(16) % city.n
    env.heading[:] = np.arange(16)
    want = np.where(city.forward[env.node, env.heading] >= 0, city.forward[env.node, env.heading], env.node)
    env.step(np.full(16, FORWARD))
    assert (env.node == want).all()
    assert (city.forward[np.arange(16) % city.n, np.arange(16)] < 0).any(), "test needs a no-op case"
    h0 = env.heading.copy()
    env.step(np.full(16, LEFT))
    assert ((env.heading - h0) % 16 == 1).all()
    env.step(np.full(16, RIGHT))
    env.step(np.full(16, LEFT3))
    assert ((env.heading - h0) % 16 == 3).all()


def test_every_node_reaches_every_other(small_city):
    city, _ = small_city
    assert np.isfinite(city.hops).all() and (city.hops >= 0).all()
    assert city.hops.max() > 5
    # the forward table only moves along edges, and edges are symmetric
    for i in range(city.n):
        for j in city.neighbours[i]:
            assert i in city.neighbours[j]
        f = city.forward[i][city.forward[i] >= 0]
        assert np.isin(f, city.neighbours[i]).all()
    # independent check by BFS from node 0
    seen, frontier = {0}, [0]
    while frontier:
        frontier = [j for i in frontier for j in city.neighbours[i] if j not in seen and not seen.add(j)]
    assert len(seen) == city.n


def test_city_has_dead_ends_and_stop_cues(small_city):
    city, _ = small_city
    deg = np.array([len(n) for n in city.neighbours])
    assert (deg == 1).any()
    assert city.stop.any()
    # a view with the stop cue: forward reaches a dead end within two steps
    n, h = np.argwhere(city.stop)[0]
    for _ in range(3):
        if city.forward[n, h] < 0:
            break
        n = city.forward[n, h]
    assert city.forward[n, h] < 0 and deg[n] == 1


# ------------------------------------------------------------------ rewards
def _line_env(goal_radius=100.0, shaping_radius=200.0):
    """A straight street of 40 nodes 10 m apart (heading 0 walks +x)."""
    pos = np.stack([np.arange(40) * 10.0, np.zeros(40)], 1)
    nb = [np.array([j for j in (i - 1, i + 1) if 0 <= j < 40]) for i in range(40)]
    city = C.City(0, pos, nb, C.forward_table(pos, nb), np.abs(np.arange(40)[:, None] - np.arange(40)[None]),
                  np.array([[0.0, 10.0], [390.0, 10.0]]), np.ones(2), np.ones((2, 3)),
                  np.zeros((4, 4), np.float32), np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), bool),
                  np.zeros(2), 2.0, 400.0, np.zeros((40, 16), bool))
    cache = np.zeros((40, 16, 3, 32, 32), np.uint8)
    env = CourierVecEnv(city, cache, num_envs=1, seed=0, goal_radius_m=goal_radius,
                        shaping_radius_m=shaping_radius, reward_per_node=0.1, episode_steps=1000)
    env.reset()
    env.node[:], env.heading[:], env.goal[:] = 0, 0, 39
    env.min_dist[:] = 390.0
    env.goal_reward[:] = 0.1 * 39
    return env


def test_shaping_pays_only_on_new_minimum_distance():
    env = _line_env()
    about = [LEFT3, LEFT3, LEFT, LEFT]  # 3 + 3 + 1 + 1 bins = 180 degrees
    actions = [FORWARD] * 20 + about + [FORWARD] * 2 + about + [FORWARD] * 5
    rewards = []
    for a in actions:
        _, r, _, _, info = env.step(np.array([a]))
        rewards.append((int(env.node[0]), float(r[0]), bool(info["goal_reached"][0])))
    gr = 3.9
    best = math.inf
    for node, r, reached in rewards:
        d = abs(390 - 10 * node)
        assert not reached
        if d < 200 and d < best:
            assert r == pytest.approx(gr * (200 - d) / 100, rel=1e-5), (node, r)
            best = d
        else:
            assert r == 0.0, (node, r)  # outside 200 m, or not a new minimum (walking back, turning)
    nodes = [n for n, _, _ in rewards]
    assert nodes[19] == 20 and nodes[25] == 18 and nodes[-1] == 23
    paid = [n for n, r, _ in rewards if r > 0]
    # node 20 (190 m) is paid once on the way out, not again on the way back; 21-23 are new minima
    assert paid == [20, 21, 22, 23]
    assert rewards[20][1] == 0.0 and rewards[-4][1] == 0.0  # turning; back at node 20


def test_goal_reward_is_path_length_and_new_goal_follows():
    env = _line_env()
    env.node[:] = 29  # 100 m away: not yet reached (strictly within 100 m)
    env.min_dist[:] = 100.0
    _, r, _, _, info = env.step(np.array([FORWARD]))  # to node 30: 90 m, reached
    assert info["goal_reached"][0] and r[0] == pytest.approx(0.1 * 39)
    assert env.goal[0] != 39 or env.min_dist[0] > 100
    assert env.goal_reward[0] == pytest.approx(0.1 * abs(int(env.goal[0]) - 30))


def test_curriculum_limits_goal_distance(small_city):
    city, cache = small_city
    env = CourierVecEnv(city, cache, num_envs=32, seed=1, max_goal_m=150.0)
    env.reset()
    d = city.distances(env.node, env.goal)
    assert (d > 100).all() and (d <= 150).all()


def test_goal_descriptors(small_city):
    city, _ = small_city
    g = C.goal_landmarks(city, np.arange(city.n))
    assert np.allclose(g.sum(1), 1, atol=1e-5)
    # the largest entry belongs to the nearest landmark
    d = np.linalg.norm(city.pos[:, None] - city.landmarks[None], axis=-1)
    assert (g.argmax(1) == d.argmin(1)).all()
    ll = C.goal_latlong(city, np.arange(city.n))
    assert ll.min() >= 0 and ll.max() <= 1


# ------------------------------------------------------------------ renderer
def test_renderer_is_deterministic_for_a_seed(small_city):
    city, cache = small_city
    again = C.make_city(3, blocks=3, block_m=60.0, landmarks=4)
    assert np.array_equal(again.pos, city.pos)
    cache2 = C.render_cache(again, size=32)
    assert np.array_equal(cache, cache2)
    other = C.render_cache(C.make_city(4, blocks=3, block_m=60.0, landmarks=4), size=32)
    assert not np.array_equal(cache[:5], other[:5])
    # the cache holds exactly what the renderer draws on demand
    n, h = np.array([0, 5, 7]), np.array([3, 0, 15])
    assert np.array_equal(C.render(city, n, h, size=32), cache[n, h])
    # views differ between headings at a node (not a constant image)
    assert len({cache[0, k].tobytes() for k in range(16)}) > 8


# ------------------------------------------------------------------ V-trace
def test_vtrace_matches_hand_computation():
    T = 3
    g = 0.9
    blp = torch.log(torch.tensor([[0.5], [0.25], [0.5]]))
    tlp = torch.log(torch.tensor([[0.25], [0.5], [1.0]]))  # ratios 0.5, 2, 2
    r = torch.tensor([[1.0], [0.0], [2.0]])
    v = torch.tensor([[0.5], [1.0], [1.5]])
    boot = torch.tensor([3.0])
    disc = torch.tensor([[g], [0.0], [g]])  # an episode ends after step 1
    out = V.vtrace(blp, tlp, r, v, boot, disc, rho_bar=1.0, c_bar=1.0)
    rho = [0.5, 1.0, 1.0]  # truncated at 1; c the same
    nv = [1.0, 1.5, 3.0]
    delta = [rho[t] * (r[t, 0].item() + disc[t, 0].item() * nv[t] - v[t, 0].item()) for t in range(T)]
    # backwards: v_s - V_s = delta_s + gamma_s c_s (v_{s+1} - V_{s+1})
    d2 = delta[2]
    d1 = delta[1] + 0.0 * 1.0 * d2
    d0 = delta[0] + g * 0.5 * d1
    vs = [0.5 + d0, 1.0 + d1, 1.5 + d2]
    assert torch.allclose(out.vs[:, 0], torch.tensor(vs), atol=1e-6)
    nvs = [vs[1], vs[2], 3.0]
    pg = [min(1.0, [0.5, 2, 2][t]) * (r[t, 0].item() + disc[t, 0].item() * nvs[t] - v[t, 0].item()) for t in range(T)]
    assert torch.allclose(out.pg_advantages[:, 0], torch.tensor(pg), atol=1e-6)
    assert torch.allclose(out.rhos[:, 0], torch.tensor([0.5, 2.0, 2.0]))


def test_vtrace_on_policy_equals_n_step_returns():
    gen = torch.Generator().manual_seed(0)
    T, B = 7, 5
    lp = -torch.rand(T, B, generator=gen)
    r, v = torch.randn(T, B, generator=gen), torch.randn(T, B, generator=gen)
    boot = torch.randn(B, generator=gen)
    disc = 0.95 * (torch.rand(T, B, generator=gen) > 0.2).float()
    out = V.vtrace(lp, lp, r, v, boot, disc)
    G = V.n_step_returns(r, boot, disc)
    # and an independent loop over each (s, b): sum of discounted rewards to the unroll's end
    ref = torch.zeros(T, B)
    for b in range(B):
        for s in range(T):
            acc, scale = 0.0, 1.0
            for t in range(s, T):
                acc += scale * r[t, b].item()
                scale *= disc[t, b].item()
            ref[s, b] = acc + scale * boot[b].item()
    assert torch.allclose(G, ref, atol=1e-5)
    assert torch.allclose(out.vs, G, atol=1e-5)
    nxt = torch.cat([G[1:], boot[None]])
    assert torch.allclose(out.pg_advantages, r + disc * nxt - v, atol=1e-5)


def test_actor_critic_loss_gradient_direction():
    """With a positive advantage on action 2 the policy-gradient step raises its probability."""
    logits = torch.zeros(1, 1, 5, requires_grad=True)
    values = torch.zeros(1, 1, requires_grad=True)
    loss, parts = V.actor_critic_loss(logits, torch.tensor([[2]]), values, torch.log(torch.tensor([[0.2]])),
                                      torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([0.0]),
                                      entropy_cost=0.0)
    loss.backward()
    assert logits.grad[0, 0, 2] < 0 and (logits.grad[0, 0, [0, 1, 3, 4]] > 0).all()
    assert values.grad[0, 0] < 0  # the baseline moves towards the target 1
    assert parts["rho_mean"] == pytest.approx(1.0)


# ------------------------------------------------------------------ agents
@pytest.mark.parametrize("kind", ["goalnav", "citynav"])
def test_agents_unroll_shapes_and_episode_reset(kind):
    torch.manual_seed(0)
    model = M.AGENTS[kind](6, size=32, hidden=16, lstm=8, goal_lstm=8, bottleneck=4, dropout=0.0)
    T, B = 4, 3
    view = torch.randint(0, 255, (T, B, 3, 32, 32), dtype=torch.uint8)
    goal = torch.rand(T, B, 6)
    pa, pr = torch.zeros(T, B, dtype=torch.long), torch.zeros(T, B)
    starts = torch.zeros(T, B, dtype=torch.bool)
    feats = model.torso(view.flatten(0, 1)).view(T, B, -1)
    city = torch.zeros(B, dtype=torch.long)
    logits, values, heads, st = model.unroll(feats, goal, pa, pr, starts, model.initial_state(B), city)
    assert logits.shape == (T, B, 5) and values.shape == (T, B)
    assert (heads is None) == (kind == "goalnav")
    # a start flag at t wipes the state: the outputs from t on equal a fresh unroll's
    starts2 = starts.clone()
    starts2[2] = True
    junk = {k: tuple(torch.randn_like(x) for x in v) for k, v in st.items()}
    l2, _, _, _ = model.unroll(feats, goal, pa, pr, starts2, junk, city)
    l3, _, _, _ = model.unroll(feats[2:], goal[2:], pa[2:], pr[2:], starts[2:], model.initial_state(B), city)
    assert torch.allclose(l2[2:], l3, atol=1e-6)


def test_multicitynav_transfer_freezes_shared_modules():
    torch.manual_seed(0)
    m = M.MultiCityNav(6, cities=2, size=32, hidden=16, lstm=8, goal_lstm=8, bottleneck=4, dropout=0.0)
    pid = m.add_city()
    assert pid == 2 and len(m.pathways) == 3
    for p in m.shared_parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.Adam(m.pathways[pid].parameters(), lr=0.1)
    T, B = 3, 4
    feats = m.torso(torch.randint(0, 255, (T * B, 3, 32, 32), dtype=torch.uint8)).view(T, B, -1)
    city = torch.full((B,), pid)
    logits, values, heads, _ = m.unroll(feats, torch.rand(T, B, 6), torch.zeros(T, B, dtype=torch.long),
                                        torch.zeros(T, B), torch.zeros(T, B, dtype=torch.bool),
                                        m.initial_state(B), city)
    (logits.sum() + values.sum() + heads.sum()).backward()
    opt.step()
    after = m.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith(f"pathways.{pid}.") for k in changed)
    # mixed-city batches route each environment through its own pathway
    city = torch.tensor([0, 1, 0, 1])
    l_mixed, _, _, _ = m.unroll(feats, torch.rand(T, B, 6).zero_(), torch.zeros(T, B, dtype=torch.long),
                                torch.zeros(T, B), torch.zeros(T, B, dtype=torch.bool), m.initial_state(B), city)
    l_one, _, _, _ = m.unroll(feats[:, :1], torch.zeros(T, 1, 6), torch.zeros(T, 1, dtype=torch.long),
                              torch.zeros(T, 1), torch.zeros(T, 1, dtype=torch.bool), m.initial_state(1),
                              torch.tensor([0]))
    assert torch.allclose(l_mixed[:, :1], l_one, atol=1e-6)


# ------------------------------------------------------------------ resumption
def test_training_killed_mid_run_resumes_exactly(tmp_path, small_city, monkeypatch):
    import registry
    from common.context import RunContext
    from papers.city_nav import experiment as E

    tcfg = dict(num_envs=4, episode_steps=8, goal_radius_m=100.0, shaping_radius_m=200.0, reward_per_node=0.1,
                curriculum_start_m=120.0, curriculum_fraction=0.5, temperature_m=100.0)
    lcfg = dict(frames=4 * 5 * 8, unroll=5, lr=1e-3, gamma=0.99, baseline_cost=0.5, entropy_cost=0.01,
                aux_cost=1.0, grad_clip=40.0, chunks=4, eval_episodes=1)

    real = E.learner_step

    class Killed(Exception):
        pass

    def go(run_dir, kill_after=None):
        run_dir.mkdir(exist_ok=True)
        ctx = RunContext(registry.get("citynav_proccity"), "smoke", 0, torch.device("cpu"), run_dir, "cfg",
                         quiet=True)
        torch.manual_seed(0)
        model = M.CityNav(4, size=32, hidden=16, lstm=8, goal_lstm=8, bottleneck=4, dropout=0.5)
        env = E.make_env([small_city], tcfg, "landmarks", True, 4, 11)
        calls = [0]

        def step(*a, **k):
            calls[0] += 1
            if kill_after is not None and calls[0] > kill_after:
                raise Killed  # stands in for the kill
            return real(*a, **k)

        monkeypatch.setattr(E, "learner_step", step)
        out = E.train_agent(ctx, "agent", model, env, lcfg["frames"], lcfg, tcfg, 180.0, True, True)
        return out, model

    ref, ref_model = go(tmp_path / "a")
    with pytest.raises(Killed):
        go(tmp_path / "b", kill_after=5)  # dies in the third chunk (2 updates per chunk)
    res, model = go(tmp_path / "b")
    strip = lambda c: [{k: v for k, v in p.items()} for p in c]  # noqa: E731
    assert "resumed after epoch 2" in (tmp_path / "b" / "log.txt").read_text()
    assert len(res["curve"]) == 4
    assert strip(res["curve"]) == strip(ref["curve"])
    for (k, a), b in zip(ref_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_skip_connection_ablation_cuts_the_direct_image_path():
    """Without the skip, the policy sees the torso features only through the goal
    pathway's bottleneck: with the bottleneck's weights zeroed the logits ignore the
    features; with the skip they do not."""
    T, B = 3, 2
    for skip in (False, True):
        torch.manual_seed(0)
        m = M.CityNav(4, size=32, hidden=16, lstm=8, goal_lstm=8, bottleneck=4, dropout=0.0, skip=skip)
        assert m.core.input_size == 4 + (16 if skip else 0) + M.N_ACTIONS + 1
        with torch.no_grad():
            m.pathways[0].bottleneck.weight.zero_()
        args = (torch.rand(T, B, 4), torch.zeros(T, B, dtype=torch.long), torch.zeros(T, B),
                torch.zeros(T, B, dtype=torch.bool), m.initial_state(B), torch.zeros(B, dtype=torch.long))
        la = m.unroll(torch.rand(T, B, 16), *args)[0]
        lb = m.unroll(torch.rand(T, B, 16) + 1.0, *args)[0]
        assert torch.allclose(la, lb) == (not skip)


def test_cities_slope_known_answers():
    from papers.city_nav.experiment import cities_slope

    assert cities_slope([1, 2, 4], [0.4, 0.5, 0.6]) == pytest.approx(0.1)   # +0.1 per doubling
    assert cities_slope([1, 2, 4], [0.5, 0.5, 0.5]) == pytest.approx(0.0)
    # least squares, not the end points: (0.2 - 0.6) would say -0.2 per doubling
    assert cities_slope([1, 2, 4], [0.6, 0.9, 0.2]) == pytest.approx(-0.2)
    assert cities_slope([1, 4], [0.3, 0.5]) == pytest.approx(0.1)
    assert np.isnan(cities_slope([2], [0.5]))


def test_multi_city_env_splits_environments_per_city(small_city):
    from papers.city_nav import experiment as E

    tcfg = dict(num_envs=8, episode_steps=8, goal_radius_m=100.0, shaping_radius_m=200.0, reward_per_node=0.1,
                curriculum_start_m=120.0, curriculum_fraction=0.5, temperature_m=100.0)
    env = E.make_env([small_city] * 4, tcfg, "landmarks", True, 8, 3)
    assert env.sizes == [2, 2, 2, 2] and env.city_index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    obs = env.reset()
    assert obs["view"].shape[0] == 8
    env = E.make_env([small_city], tcfg, "landmarks", True, 8, 3, pathway_ids=[4])
    assert env.city_index.tolist() == [4] * 8
