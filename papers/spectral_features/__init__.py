"""Garg, Sharan, Zhang & Valiant, "A spectral view of adversarially robust features"
(NeurIPS 2018): registers spectral_features_mnist."""

from papers.spectral_features import experiment  # noqa: F401  (registers on import)
