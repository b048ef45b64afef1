"""trainables: hyperparameter sweeps for PyTorch image classifiers on Ray Tune."""

try:
    from importlib.metadata import version as _version

    __version__ = _version("trainables")
except Exception:  # noqa: BLE001 - running from a source tree that is not installed
    __version__ = "0.0.0"
