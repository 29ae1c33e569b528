"""Shared reinforcement-learning plumbing, kept small: only what two papers use.

Modules (each documents its own API):

- ``replay``   -- a replay buffer on the device storing whole transitions,
                  sampled by index, saved and restored with the run (HIRO).
- ``td3``      -- a TD3 learner: clipped double-Q, target-policy smoothing,
                  delayed actor updates (HIRO's two levels, flat TD3).
- ``wrappers`` -- gymnasium wrappers: time limits, goal relabelling (HIRO).
- ``evaluate`` -- evaluation over N episodes with success rates and
                  bootstrap intervals (HIRO, city navigation, World Models).
- ``video``    -- rollout frames to GIF/MP4 through imageio (figures).
- ``vtrace``   -- V-trace targets and an IMPALA-style actor-critic loss
                  (city navigation).
"""
