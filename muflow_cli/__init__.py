"""muflow: find deepfake faces with µFlow, a one-class detector fitted on real faces only."""

__version__ = "0.1.0"

__all__ = ["__version__", "Detector", "fit", "scan"]


def __getattr__(name: str):
    # Lazy: `import muflow_cli` stays cheap (torch loads only when a model is used).
    if name == "Detector":
        from .detector import Detector

        return Detector
    if name == "fit":
        from .fit import fit

        return fit
    if name == "scan":
        from .scan import scan

        return scan
    raise AttributeError(name)
