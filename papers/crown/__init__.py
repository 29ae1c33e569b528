"""Zhang, Weng, Chen, Hsieh & Daniel, "Efficient neural network robustness certification
with general activation functions" (CROWN, NeurIPS 2018): registers crown_mnist."""

from papers.crown import experiment  # noqa: F401  (registers on import)
