"""Alvarez-Melis & Jaakkola, "Towards robust interpretability with self-explaining
neural networks" (SENN, NeurIPS 2018): registers senn_mnist and senn_tabular."""

from papers.senn import experiment  # noqa: F401  (registers on import)
