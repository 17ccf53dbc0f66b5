"""Base explainers of Mahlau & Nolde (2022, Sec. 2 and Appendix A)."""
from tfagg.explainers.base import Explainer

__all__ = ["Explainer"]
