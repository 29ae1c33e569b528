"""Song, Shu, Kushman & Ermon, "Constructing Unrestricted Adversarial Examples with
Generative Models" (NeurIPS 2018): registers unrestricted_adversarial_mnist."""

from papers.unrestricted_adversary import experiment  # noqa: F401  (registers on import)
