"""Subsplit Bayesian networks (Zhang & Matsen, NeurIPS 2018): registers sbn_table1 and
sbn_simulation."""

from papers.sbn import experiment  # noqa: F401  (registers on import)
