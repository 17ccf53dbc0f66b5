"""Base explainers of Mahlau & Nolde (2022, Sec. 2 and Appendix A).

Every explainer is ``Explainer(model, <hyperparameters>, batch_size=64, seed=0, score=...)`` and
is called as ``explainer(images, labels, seed=None) -> (N, H, W) float32`` raw attributions.
"""
from tfagg.explainers.base import Explainer
from tfagg.explainers.expected_gradients import ExpectedGradients
from tfagg.explainers.gradcam import GradCAM
from tfagg.explainers.igos_pp import IGOSPP
from tfagg.explainers.integrated_gradients import IntegratedGradients
from tfagg.explainers.polycam import PolyCAM
from tfagg.explainers.rise import RISE
from tfagg.explainers.smoothgrad import SmoothGrad

#: Name -> class of the base explainers of the paper's ensemble.
EXPLAINERS = {
    "smoothgrad": SmoothGrad,
    "integrated_gradients": IntegratedGradients,
    "expected_gradients": ExpectedGradients,
    "gradcam": GradCAM,
    "polycam": PolyCAM,
    "igos_pp": IGOSPP,
    "rise": RISE,
}

__all__ = [
    "Explainer",
    "EXPLAINERS",
    "SmoothGrad",
    "IntegratedGradients",
    "ExpectedGradients",
    "GradCAM",
    "PolyCAM",
    "IGOSPP",
    "RISE",
]
