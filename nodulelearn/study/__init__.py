"""nodulelearn.study."""
