"""SVCCA / PWCCA (Morcos, Raghu & Bengio, NeurIPS 2018): registers pwcca_synthetic,
pwcca_cnn and pwcca_lstm."""

from papers.pwcca import experiment  # noqa: F401  (registers on import)
