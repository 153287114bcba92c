"""muflow: find deepfake faces with µFlow, a one-class detector fitted on real faces only."""

from .version import __version__

__all__ = ["__version__", "DeepfakeModel", "fit", "scan"]


def __getattr__(name: str):
    # Lazy: `import muflow_cli` stays cheap (torch loads only when a model is used).
    if name == "DeepfakeModel":
        from .deepfake_model import DeepfakeModel

        return DeepfakeModel
    if name == "fit":
        from .fit import fit

        return fit
    if name == "scan":
        from .scan import scan

        return scan
    raise AttributeError(name)
