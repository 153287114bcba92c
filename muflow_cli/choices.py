"""The names users choose from, in one light module: the library checks against them and the CLI
builds its choices from them, without importing torch to show ``--help``."""

TAILS = ("two", "upper")  # stats/conformal.py: two-sided or upper-tail conformal p-values
FIT_TAILS = ("auto", *TAILS)  # fit: auto chooses by the smooth-copy probe (stats/calibration.py: choose_tail)
ENGINES = ("auto", "torch", "onnx")  # model/engines/choose.py
CACHE_PLACES = ("auto", "memory", "disk")  # nn/feature_cache.py: where fit's feature cache lives
FACE_DETECTORS = ("scrfd", "yunet")  # faces/detect.py
ALIGNED_CONVENTIONS = ("muflow", "arcface", "ffhq")  # faces/align.py: pre-aligned crop conventions
GROUP_BY = ("auto", "file", "folder")  # inputs/files.py: how faces are grouped for calibration splits
# What one group is, in the plural, for summaries and warnings ("3 groups of near-duplicates", never "3 autos")
GROUP_UNITS = {"auto": "groups of near-duplicates", "file": "files", "folder": "folders"}
PRECISIONS = ("auto", "fp32", "bf16")  # pipelines/fit.py: the flows' training precision (scoring is always fp32)
NATIVE_POOLS = ("mean", "top")  # faces/native.py: how a large face's tile scores are pooled
FIT_PRESETS = ("paper",)  # pipelines/fit_config.py PRESETS: named fit configurations
