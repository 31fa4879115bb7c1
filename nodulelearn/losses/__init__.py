"""Loss registry: every loss natively in Keras 3, verified against reference implementations.

>>> from nodulelearn import losses
>>> loss = losses.get("supcon", temperature=0.1)
>>> losses.info("supcon").consumes
'views'

``names()``, ``info``, ``get`` and ``register`` import no Keras until a loss is built or looked
up; the loss classes and pure functions below are imported on first use (``EXPORTS``).
"""

from __future__ import annotations

from nodulelearn.lazy import lazy_attributes
from nodulelearn.losses.plugins import ENTRY_POINT_GROUP, import_loss_module
from nodulelearn.losses.registry import (
    BUILT_INS,
    CONSUMES,
    LossInfo,
    check_params,
    get,
    info,
    names,
    register,
    unregister,
)

#: The loss classes and pure functions, and the module defining each (imported on first use).
EXPORTS: dict[str, str] = {
    **dict.fromkeys(("BinaryCrossEntropy", "SigmoidFocalCrossEntropy",
                     "binary_crossentropy_loss", "sigmoid_focal_loss"),
                    "nodulelearn.losses.classification"),
    **dict.fromkeys(("NTXent", "SupervisedContrastive", "supcon_loss"),
                    "nodulelearn.losses.contrastive"),
    **dict.fromkeys(("Contrastive", "LiftedStruct", "NPairs", "contrastive_inbatch_loss",
                     "contrastive_pair_loss", "lifted_struct_loss", "npairs_loss"),
                    "nodulelearn.losses.metric"),
    **dict.fromkeys(("MultiSimilarity", "multi_similarity_loss"),
                    "nodulelearn.losses.multi_similarity"),
    **dict.fromkeys(("TripletHard", "TripletSemiHard", "triplet_hard_loss",
                     "triplet_semihard_loss"), "nodulelearn.losses.triplet"),
}

__all__ = [
    "BUILT_INS", "CONSUMES", "ENTRY_POINT_GROUP", "LossInfo", "check_params", "get",
    "import_loss_module", "info", "names", "register", "unregister", *EXPORTS,
]


__getattr__, __dir__ = lazy_attributes(globals(), EXPORTS)
