"""Mirowski et al., "Learning to navigate in cities without a map" (NeurIPS 2018;
StreetLearn), on a procedural-city stand-in: registers citynav_proccity."""

from papers.city_nav import experiment  # noqa: F401  (registers on import)
