"""VCL (Littwin & Wolf, NeurIPS 2018): registers vcl_theory, vcl_cnn and vcl_mlp."""

from papers.vcl import experiment  # noqa: F401  (registers on import)
