"""SGR: semantically-aware global reasoning (module, components, matching, analysis)."""
from .components import component_masks, connected_components
from .matching import greedy_match, sgr_loss
from .module import SGR

__all__ = ["SGR", "component_masks", "connected_components", "greedy_match", "sgr_loss"]
