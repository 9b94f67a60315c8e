"""Weight normalization and its companions (Salimans & Kingma 2016).

- `WNLinear`, `WNConv2d`: layers with weight `g * v / ||v||` (`weight_norm.py`).
- `fold_weight_norm(model)`: a copy with plain layers and identical outputs, for acting.
- `MeanOnlyBatchNorm(num_features)`: subtract the batch (train) or running (eval) mean.
- `data_dependent_init(model, batch)`: the paper's init from one real minibatch.
"""

from wnrl.nn.init import data_dependent_init
from wnrl.nn.mean_only_bn import MeanOnlyBatchNorm
from wnrl.nn.weight_norm import (
    WN_LAYERS,
    WNConv2d,
    WNLinear,
    fold_weight_norm,
    folded_state_dict,
    is_weight_normalized,
)

__all__ = [
    "WN_LAYERS",
    "MeanOnlyBatchNorm",
    "WNConv2d",
    "WNLinear",
    "data_dependent_init",
    "fold_weight_norm",
    "folded_state_dict",
    "is_weight_normalized",
]
