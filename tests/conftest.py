import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfagg  # noqa: E402,F401  (sets TensorFlow up before its first import)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def offline_home(tmp_path_factory):
    """A TFAGG_HOME holding a trained offline model ('synth-signs' preset).

    Uses the user's cached model when one exists; otherwise trains a quick version (fewer images
    and epochs than the preset) into a temporary home, so tests never write to the user's cache.
    """
    from tfagg.models.zoo import load_model, model_dir

    try:
        load_model(model_dir("synth-signs", 0))
        from tfagg.paths import tfagg_home

        return tfagg_home()
    except FileNotFoundError:
        pass
    from tfagg.training import train_model

    home = tmp_path_factory.mktemp("tfagg_home")
    train_model("synth-signs", seed=0, out_dir=model_dir("synth-signs", 0, root=home / "models"),
                epochs=3, train_images=12000, progress=False)
    return home


@pytest.fixture(scope="session")
def offline_model(offline_home):
    from tfagg.models.zoo import load_model, model_dir

    return load_model(model_dir("synth-signs", 0, root=offline_home / "models"))


@pytest.fixture
def no_network(monkeypatch):
    """Make any network connection attempt fail: offline tests must never download."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
