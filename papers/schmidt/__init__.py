"""Schmidt, Santurkar, Tsipras, Talwar & Madry, "Adversarially robust generalization
requires more data" (NeurIPS 2018): registers robust_sample_complexity_theory and
robust_sample_complexity_mnist."""

from papers.schmidt import experiment  # noqa: F401  (registers on import)
