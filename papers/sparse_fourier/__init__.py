"""Bafna, Murtagh & Vyas, "Thwarting adversarial examples: an L0-robust sparse Fourier
transform" (NeurIPS 2018): registers sparse_fourier_l0_mnist and sparse_fourier_l0_fashion."""

from papers.sparse_fourier import experiment  # noqa: F401  (registers on import)
