"""Xiao, Zhu, Li, He, Liu & Song, "Spatially transformed adversarial examples"
(stAdv, ICLR 2018): registers stadv_mnist."""

from papers.stadv import experiment  # noqa: F401  (registers on import)
