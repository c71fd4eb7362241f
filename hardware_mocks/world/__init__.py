"""The virtual world: parts with planted defects, and pure renderers for every sensor.

One world state (a part instance, its pose on the bench and its defects) is the single source
of truth; the RGB, IR and scanner renderers all derive their pixels, temperatures and points
from it, so the three simulated sensors always agree about one physical object.
"""

from .defects import DEFECT_TYPES, VISIBILITY_CLASSES, Defect, DefectConfig, sample_defect
from .parts import CATEGORIES, PART_SPECS, PartInstance, PartSpec, sample_part

__all__ = [
    "CATEGORIES", "DEFECT_TYPES", "PART_SPECS", "VISIBILITY_CLASSES", "Defect", "DefectConfig", "PartInstance",
    "PartSpec", "sample_defect", "sample_part",
]
