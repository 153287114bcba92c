"""Which packages ship: every package under muflow_cli/ (found, never listed by hand, so a new layer
folder cannot be left out of a wheel), and weights/ installed as muflow_cli.model_files.
Everything else about the project is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["muflow_cli", "muflow_cli.*"], exclude=["*.__pycache__"]), "muflow_cli.model_files"],
    package_dir={"muflow_cli.model_files": "weights"},
)
