"""Sanity checks for saliency maps (Adebayo et al., NeurIPS 2018): registers
sanity_checks_model_randomization and sanity_checks_data_randomization."""

from papers.sanity_checks import experiment  # noqa: F401  (registers on import)
