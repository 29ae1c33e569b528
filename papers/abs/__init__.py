"""Schott, Rauber, Bethge & Brendel, "Towards the first adversarially robust neural
network model on MNIST" (ICLR 2019): registers abs_mnist."""

from papers.abs import experiment  # noqa: F401  (registers on import)
