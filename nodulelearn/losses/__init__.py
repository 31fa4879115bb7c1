"""Loss registry: every loss natively in Keras 3, verified against reference implementations.

>>> from nodulelearn import losses
>>> loss = losses.get("supcon", temperature=0.1)
>>> losses.info("supcon").protocol
'pretrain_probe'
"""

from nodulelearn.losses.classification import (
    BinaryCrossEntropy,
    SigmoidFocalCrossEntropy,
    binary_crossentropy_loss,
    sigmoid_focal_loss,
)
from nodulelearn.losses.contrastive import NTXent, SupervisedContrastive, supcon_loss
from nodulelearn.losses.metric import (
    Contrastive,
    LiftedStruct,
    NPairs,
    contrastive_inbatch_loss,
    contrastive_pair_loss,
    lifted_struct_loss,
    npairs_loss,
)
from nodulelearn.losses.multi_similarity import MultiSimilarity, multi_similarity_loss
from nodulelearn.losses.plugins import ENTRY_POINT_GROUP, import_loss_module
from nodulelearn.losses.registry import (
    CONSUMES,
    PROTOCOLS,
    LossInfo,
    get,
    info,
    names,
    register,
    unregister,
)
from nodulelearn.losses.triplet import (
    TripletHard,
    TripletSemiHard,
    triplet_hard_loss,
    triplet_semihard_loss,
)

__all__ = [
    "CONSUMES",
    "ENTRY_POINT_GROUP",
    "PROTOCOLS",
    "BinaryCrossEntropy",
    "Contrastive",
    "LiftedStruct",
    "MultiSimilarity",
    "NPairs",
    "TripletHard",
    "TripletSemiHard",
    "contrastive_inbatch_loss",
    "contrastive_pair_loss",
    "lifted_struct_loss",
    "multi_similarity_loss",
    "npairs_loss",
    "triplet_hard_loss",
    "triplet_semihard_loss",
    "LossInfo",
    "NTXent",
    "SigmoidFocalCrossEntropy",
    "SupervisedContrastive",
    "binary_crossentropy_loss",
    "get",
    "import_loss_module",
    "info",
    "names",
    "register",
    "sigmoid_focal_loss",
    "supcon_loss",
    "unregister",
]
