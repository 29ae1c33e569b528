"""Tramer & Boneh, "Adversarial training and robustness for multiple perturbations"
(NeurIPS 2019): registers multi_perturbation_mnist."""

from papers.tramer_boneh import experiment  # noqa: F401  (registers on import)
