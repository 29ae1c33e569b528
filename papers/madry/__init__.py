"""Madry et al., "Towards deep learning models resistant to adversarial attacks" (ICLR 2018):
registers madry_mnist."""

from papers.madry import experiment  # noqa: F401  (registers on import)
