"""Bundled model files (installed as ``muflow_cli.model_files``); see manifest.json."""
