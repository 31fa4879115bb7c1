"""The encoder registry (kind ``model``: the ``--model`` flag), with its catalogue of built-ins.

Listing the names imports no Keras; an encoder's module is imported when it is first looked up.
"""

from nodulelearn.registry import Registry

#: The built-in encoders and the module that registers each (checked against it by the tests).
BUILT_INS = {"compact_cnn": "nodulelearn.models.encoders",
             "small_resnet": "nodulelearn.models.encoders"}

#: ``name`` is the Keras model's name, not a hyperparameter.
ENCODERS = Registry("model", skip_params=("name",), catalogue=BUILT_INS)
