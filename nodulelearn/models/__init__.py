"""nodulelearn.models."""
