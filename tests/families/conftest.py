"""The diffusion tests' small generated dataset, for the families' tests too."""

from tests.diffusion.conftest import shapes_dataset  # noqa: F401  (a fixture, found by name)
