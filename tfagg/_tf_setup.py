"""Runtime settings that must be in place before TensorFlow is first imported.

On CPUs where TensorFlow ships oneDNN kernels switched off by default, forward passes and
input gradients of a ResNet18 are 2-16x slower without them (measured on a 2-core x86 CI
machine). We therefore switch oneDNN on unless the user already chose a value.  This only
works when tfagg is imported *before* TensorFlow; if TensorFlow was imported first we warn
once, because the user would otherwise silently lose that speed.
"""
import os
import sys
import warnings

ONEDNN_VAR = "TF_ENABLE_ONEDNN_OPTS"


def configure_tensorflow_environment() -> None:
    tf_already_imported = "tensorflow" in sys.modules
    if ONEDNN_VAR in os.environ:
        return  # respect an explicit user choice
    if tf_already_imported:
        warnings.warn(
            "tensorflow was imported before tfagg, so tfagg could not enable oneDNN kernels "
            f"({ONEDNN_VAR}=1); on CPUs this can make explanations several times slower. "
            f"Import tfagg first or export {ONEDNN_VAR}=1.",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    os.environ[ONEDNN_VAR] = "1"
    # Keep TensorFlow's C++ start-up chatter out of users' terminals unless they ask for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
