"""Ha & Schmidhuber, "Recurrent world models facilitate policy evolution" (World
Models, NeurIPS 2018): registers world_models_doom."""

from papers.world_models import experiment  # noqa: F401  (registers on import)
