"""Generalized cross entropy (Zhang & Sabuncu, NeurIPS 2018): registers gce_noisy_labels."""

from papers.gce import experiment  # noqa: F401  (registers on import)
