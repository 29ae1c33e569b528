"""Tao, Ma, Liu & Zhang, "Attacks meet interpretability: attribute-steered detection of
adversarial samples" (AmI, NeurIPS 2018) and Carlini's adaptive attack on it (arXiv
1902.02322): registers ami_synthetic_faces (a synthetic-faces proxy)."""

from papers.ami import experiment  # noqa: F401  (registers on import)
