"""V-trace off-policy targets and an IMPALA-style actor-critic loss.

Espeholt et al., "IMPALA: Scalable Distributed Deep-RL with Importance Weighted
Actor-Learner Architectures" (ICML 2018), Section 4.1.  With
``rho_t = min(rho_bar, pi(a_t|x_t) / mu(a_t|x_t))`` and ``c_t = min(c_bar, ...)`` the
same ratio truncated at ``c_bar``:

    delta_t = rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t))
    v_s - V(x_s) = delta_s + gamma_s c_s (v_{s+1} - V(x_{s+1}))        (Remark 1)

and the policy-gradient advantage is ``rho^pg_s (r_s + gamma_s v_{s+1} - V(x_s))``
with ``rho^pg`` truncated at ``pg_rho_bar``.  ``gamma_t`` is the discount times
``1 - done_t``, so an episode boundary stops both the bootstrap and the trace.  When
behaviour and target policies agree (rho = c = 1) ``v_s`` is the n-step bootstrapped
return to the end of the unroll (tests/test_city_nav.py checks both identities).

Everything is batched over ``(T, B)`` = time x environments, on whichever device the
inputs live; the only loop is the backward recursion over the T steps of an unroll.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class VTraceReturns(NamedTuple):
    vs: torch.Tensor            # (T, B) value targets
    pg_advantages: torch.Tensor  # (T, B) advantages for the policy gradient
    rhos: torch.Tensor          # (T, B) untruncated importance ratios


@torch.no_grad()
def vtrace(behaviour_logp: torch.Tensor, target_logp: torch.Tensor, rewards: torch.Tensor,
           values: torch.Tensor, bootstrap: torch.Tensor, discounts: torch.Tensor,
           rho_bar: float = 1.0, c_bar: float = 1.0, pg_rho_bar: float = 1.0) -> VTraceReturns:
    """V-trace targets for one batch of unrolls.

    behaviour_logp, target_logp: (T, B) log-probabilities of the actions taken under the
    behaviour (actor) and target (learner) policies; rewards, values, discounts: (T, B)
    (``discounts[t]`` multiplies the value of step t+1: gamma * (1 - done_t));
    bootstrap: (B,) the value of the state after the last step.
    """
    rhos = torch.exp(target_logp - behaviour_logp)
    clipped_rho = rhos.clamp(max=rho_bar)
    cs = rhos.clamp(max=c_bar)
    next_values = torch.cat([values[1:], bootstrap[None]], 0)
    deltas = clipped_rho * (rewards + discounts * next_values - values)
    acc = torch.zeros_like(bootstrap)
    diffs = torch.empty_like(values)
    for t in range(values.shape[0] - 1, -1, -1):
        acc = deltas[t] + discounts[t] * cs[t] * acc
        diffs[t] = acc
    vs = values + diffs
    next_vs = torch.cat([vs[1:], bootstrap[None]], 0)
    pg_adv = rhos.clamp(max=pg_rho_bar) * (rewards + discounts * next_vs - values)
    return VTraceReturns(vs, pg_adv, rhos)


def n_step_returns(rewards: torch.Tensor, bootstrap: torch.Tensor, discounts: torch.Tensor) -> torch.Tensor:
    """The bootstrapped return G_s = r_s + gamma_s G_{s+1}, G_T = bootstrap (T, B)."""
    out = torch.empty_like(rewards)
    acc = bootstrap
    for t in range(rewards.shape[0] - 1, -1, -1):
        acc = rewards[t] + discounts[t] * acc
        out[t] = acc
    return out


def actor_critic_loss(logits: torch.Tensor, actions: torch.Tensor, values: torch.Tensor,
                      behaviour_logp: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor,
                      bootstrap: torch.Tensor, baseline_cost: float = 0.5, entropy_cost: float = 0.01,
                      rho_bar: float = 1.0, c_bar: float = 1.0) -> tuple[torch.Tensor, dict]:
    """IMPALA's loss on a (T, B) batch: policy gradient with V-trace advantages, a
    squared-error baseline towards ``vs`` (times ``baseline_cost``, halved as in IMPALA)
    and an entropy bonus.  ``logits``: (T, B, A) of the learner; ``values``: (T, B) with
    gradient; ``bootstrap``: (B,) (detached).  Returns the loss and its parts (floats)."""
    logp_all = F.log_softmax(logits, -1)
    target_logp = logp_all.gather(-1, actions[..., None]).squeeze(-1)
    vt = vtrace(behaviour_logp, target_logp.detach(), rewards, values.detach(), bootstrap.detach(),
                discounts, rho_bar=rho_bar, c_bar=c_bar)
    pg = -(target_logp * vt.pg_advantages).sum()
    baseline = 0.5 * ((vt.vs - values) ** 2).sum()
    entropy = -(logp_all.exp() * logp_all).sum(-1).sum()
    loss = pg + baseline_cost * baseline - entropy_cost * entropy
    n = values.numel()
    parts = {"pg": pg.item() / n, "baseline": baseline.item() / n, "entropy": entropy.item() / n,
             "rho_mean": vt.rhos.mean().item()}
    return loss, parts
