"""The "paper" of this plugin: seed 001, Gilles Louppe's lecture 12 of INFO8010
Deep Learning (University of Liège), "Uncertainty".  Its equations and figures
are what the experiments regenerate; the papers it builds on are cited in each
topic's module docstring."""

from registry import Paper

PAPER = Paper(
    title="Deep Learning, Lecture 12: Uncertainty (aleatoric and epistemic uncertainty, "
          "mixture density networks, normalizing flows, Bayes by backprop, MC dropout, "
          "infinite networks)",
    authors="Gilles Louppe",
    venue="INFO8010 lecture notes, University of Liège",
    code="none followed; the lecture's equations, Bishop (1994), Dinh et al. (2017), "
         "Blundell et al. (2015), Gal and Ghahramani (2016), Lakshminarayanan et al. (2017), "
         "Neal (1995), Williams (1997), Cho and Saul (2009)")
