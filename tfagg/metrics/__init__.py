"""Fidelity metrics: insertion and deletion (Mahlau & Nolde 2022, Sec. 4; Petsiuk et al. 2018)."""
from tfagg.metrics.auc import auc, curve_fractions
from tfagg.metrics.causal_metrics import (
    BASELINES,
    InsertionDeletionResult,
    deletion_auc,
    insertion_auc,
    insertion_deletion,
)
from tfagg.metrics.ranking import step_schedule

__all__ = [
    "auc",
    "curve_fractions",
    "insertion_deletion",
    "insertion_auc",
    "deletion_auc",
    "InsertionDeletionResult",
    "step_schedule",
    "BASELINES",
]
