"""Models: ResNet18 with stable layer names, torchvision weight conversion, offline model zoo."""
from tfagg.models.resnet18 import LAST_CONV_STAGE, STAGE_NAMES, resnet18
from tfagg.models.outputs import class_probabilities, probability_model

__all__ = ["resnet18", "class_probabilities", "probability_model", "STAGE_NAMES", "LAST_CONV_STAGE"]
