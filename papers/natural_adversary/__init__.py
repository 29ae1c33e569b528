"""Zhao, Dua & Singh, "Generating Natural Adversarial Examples" (ICLR 2018):
registers natural_adversarial_mnist."""

from papers.natural_adversary import experiment  # noqa: F401  (registers on import)
