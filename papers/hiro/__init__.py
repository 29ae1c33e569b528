"""Nachum, Gu, Lee & Levine, "Data-Efficient Hierarchical Reinforcement Learning"
(HIRO, NeurIPS 2018): registers hiro_nav."""

from papers.hiro import experiment  # noqa: F401  (registers on import)
