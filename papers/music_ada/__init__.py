"""Dieleman, van den Oord & Simonyan, "The challenge of realistic music generation:
modelling raw audio at scale" (NeurIPS 2018): registers music_ada_synthpiano."""

from papers.music_ada import experiment  # noqa: F401  (registers on import)
