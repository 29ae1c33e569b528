"""HIRO's Ant worlds (App. B, full profile): the MJCF follows App. B (gear 30, timestep
0.02 x frame skip 5), each world steps, and success is "within 5 of the target" (x, y;
x, y, z in Fall).  Skipped when the optional dependency MuJoCo is missing."""

from __future__ import annotations

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

from papers.hiro import ant as A
from papers.hiro import envs as E

# per world: a torso position 4 from the evaluation target, and one 6 from it (free cells)
NEAR_FAR = {"maze": ((4.0, 16.0), (6.0, 16.0)), "push": ((0.0, 15.0), (0.0, 13.0)),
            "fall": ((0.0, 23.0), (0.0, 21.0))}


@pytest.mark.parametrize("world", ["maze", "push", "fall"])
def test_ant_world_follows_app_b_and_succeeds_within_5(world):
    env = E.make_env(f"ant_{world}", 2, 500, evaluation=True)
    m = env.model
    assert m.opt.timestep == pytest.approx(0.02) and env.frame_skip == 5 and env.dt == pytest.approx(0.1)
    assert m.nu == 8 and np.all(m.actuator_gear[:, 0] == 30.0)
    assert np.all(m.actuator_ctrlrange == np.array([-1.0, 1.0]))
    obs, _ = env.reset()
    assert obs.shape == (2, env.obs_dim)
    before = env.torso_pos().copy()
    rng = np.random.default_rng(0)
    for _ in range(3):
        obs, rew, _, _, info = env.step(rng.uniform(-1, 1, (2, 8)))
    assert np.isfinite(obs).all() and not np.allclose(env.torso_pos(), before)
    assert rew == pytest.approx(-info["distance"])
    # success rule: place the torsos 4 and 6 from the target, one zero-torque step
    env.reset()
    a = env.root_adr
    for d, xy in zip(env.datas, NEAR_FAR[world]):
        d.qpos[a: a + 2] = xy
        mujoco.mj_forward(m, d)
    *_, info = env.step(np.zeros((2, 8)))
    assert info["success"].tolist() == [True, False]
    assert info["distance"][0] == pytest.approx(4.0, abs=0.3) and info["distance"][1] == pytest.approx(6.0, abs=0.3)
    if world == "fall":
        assert len(env.target[0]) == 3   # x, y, z: a torso fallen into the chasm is not at the target


def test_fall_block_fills_the_chasm_and_push_block_rests():
    env = E.make_env("ant_fall", 1, 500, evaluation=True)
    m, d = env.model, env.datas[0]
    env.reset()
    block = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "block")
    y = m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "block_y")]
    for _ in range(3):
        env.step(np.zeros((1, 8)))
    assert d.xpos[block][2] == pytest.approx(A.FALL_PLATFORM + A.BLOCK_HEIGHT / 2, abs=0.05)  # on the platform
    d.qpos[y] += 8.0                        # slid over the chasm: it falls, its top flush with the platform
    for _ in range(20):
        env.step(np.zeros((1, 8)))
    assert d.xpos[block][2] + A.BLOCK_HEIGHT / 2 == pytest.approx(A.FALL_PLATFORM, abs=0.05)
    push = E.make_env("ant_push", 1, 500, evaluation=True)
    push.reset()
    for _ in range(3):
        push.step(np.zeros((1, 8)))
    b = mujoco.mj_name2id(push.model, mujoco.mjtObj.mjOBJ_BODY, "block")
    assert push.datas[0].xpos[b][:2] == pytest.approx((0.0, 8.0), abs=0.05)


def test_hiro_trains_and_evaluates_on_an_ant_world():
    """The full profile's code path: one exploring HIRO episode (both levels storing and
    learning) and one evaluation on Ant Push, with the Ant's goal and feature split."""
    import torch

    from common.rl.evaluate import evaluate
    from common.rl.wrappers import time_limited
    from papers.hiro import experiment as X

    acfg = dict(c=5, goal_range=10.0, hidden=(8, 8), buffer=500, batch_size=4, low_noise=1 / 30,
                high_noise=0.1, gamma=0.99, tau=0.005, actor_lr=1e-3, critic_lr=1e-3, high_reward_scale=0.1,
                candidates=10, start_steps=10, pretrain_steps=30)
    env = time_limited(E.make_env("ant_push", 1, 20), 20)
    base = env.unwrapped
    ag = X.make_agent("hiro", base, acfg, "cpu")
    obs = torch.as_tensor(base.reset()[0])
    assert torch.equal(base.goal_part(obs), obs[:, base.root_adr: base.root_adr + 2])   # torso x, y
    assert base.low_features(obs).shape[-1] == base.nq + base.nv - 2                   # all but x, y
    X.train_episode("hiro", ag, env, torch.Generator().manual_seed(0), 0, 10, "cpu")
    assert len(ag.low_replay) == 20 and len(ag.high_replay) == 4 and ag.high.updates > 0
    res = evaluate(time_limited(E.make_env("ant_push", 2, 20, evaluation=True), 20), X.policy_fn("hiro", ag, "cpu"))
    assert res["success"] == 0.0 and np.isfinite(res["return"])
