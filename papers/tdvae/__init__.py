"""TD-VAE (Gregor et al., ICLR 2019): registers the tdvae_* experiments."""

from papers.tdvae import experiment  # noqa: F401  (registers on import)
