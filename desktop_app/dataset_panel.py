"""The main window's Dataset page; it lives in ``desktop_app/dataset/`` (see its ``__init__``)."""

from desktop_app.dataset.panel import DatasetPanel

__all__ = ["DatasetPanel"]
