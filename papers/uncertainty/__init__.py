"""Uncertainty in deep learning (seed 001, the lecture): one experiment per topic.

Each topic is one module holding its method, its ``run(ctx)`` and its figures:
aleatoric (homo/heteroscedastic regression), mdn (mixture density networks),
flows (affine-coupling normalizing flows), infinite (wide random networks as
Gaussian processes), epistemic (Bayes by backprop, MC dropout, deep ensembles).
"""

from papers.uncertainty import aleatoric, epistemic, flows, infinite, mdn  # noqa: F401  (register on import)
