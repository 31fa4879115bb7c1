"""nodulelearn.training."""
