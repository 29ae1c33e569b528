"""Kurakin, Goodfellow & Bengio, "Adversarial machine learning at scale" (ICLR 2017):
registers kurakin_mnist."""

from papers.kurakin import experiment  # noqa: F401  (registers on import)
