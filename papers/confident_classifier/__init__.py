"""Lee, Lee, Lee & Shin, "Training confidence-calibrated classifiers for detecting
out-of-distribution samples" (ICLR 2018): registers confident_classifier_toy and
confident_classifier_mnist."""

from papers.confident_classifier import experiment  # noqa: F401  (registers on import)
