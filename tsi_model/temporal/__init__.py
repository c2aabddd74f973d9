"""Temporal modules inserted into ResNet bottlenecks: TSM shift, TIM, TEA's ME, SME and CTI."""
from tsi_model.temporal.cti import CrossScaleTemporalIntegration
from tsi_model.temporal.shift import TemporalShift
from tsi_model.temporal.sme import SalientMotionExcitation
from tsi_model.temporal.tconv import DepthwiseTemporalConv
from tsi_model.temporal.unit import TemporalUnit, TemporalUnitConfig

__all__ = [
    "CrossScaleTemporalIntegration",
    "DepthwiseTemporalConv",
    "SalientMotionExcitation",
    "TemporalShift",
    "TemporalUnit",
    "TemporalUnitConfig",
]
