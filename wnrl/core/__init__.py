"""The core vocabulary: the values that flow between parts and the parts' interfaces."""

from wnrl.core.interfaces import Actor, Learner, Replay, Saveable
from wnrl.core.types import Batch, Episode, Transition, UpdateMetrics

__all__ = ["Actor", "Batch", "Episode", "Learner", "Replay", "Saveable", "Transition",
           "UpdateMetrics"]
