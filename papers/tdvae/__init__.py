"""TD-VAE (Gregor et al., ICLR 2019): registers the tdvae_* experiments."""

from papers.tdvae import experiment  # noqa: F401  (registers on import)
from papers.tdvae import minipacman_experiment  # noqa: F401  (registers tdvae_minipacman)
