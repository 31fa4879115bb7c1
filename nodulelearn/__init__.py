"""nodulelearn: which features does a CNN learn from lung-nodule images, and how does the loss change that?"""

__version__ = "0.1.0"
