"""Where tfagg keeps trained models and other cached artefacts."""
import os
from pathlib import Path


def tfagg_home() -> Path:
    """Cache directory: ``$TFAGG_HOME`` if set, else the user's cache dir (e.g. ``~/.cache/tfagg``)."""
    env = os.environ.get("TFAGG_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("tfagg", appauthor=False))
