"""tfagg: aggregation of saliency-map explanations in TensorFlow 2 / Keras 3.

Reimplements Mahlau & Nolde (2022), "Fidelity of Ensemble Aggregation for Saliency Map
Explanations using Bayesian Optimization Techniques": seven base explainers, four
normalisations, ten pixel-wise aggregations and the insertion/deletion metrics.
"""
from tfagg._tf_setup import configure_tensorflow_environment as _configure

_configure()

__version__ = "0.1.0"
