"""CoordConv (Liu et al., NeurIPS 2018): registers coordconv_notsoclevr."""

from papers.coordconv import experiment  # noqa: F401  (registers on import)
