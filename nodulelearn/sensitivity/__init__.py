"""nodulelearn.sensitivity."""
