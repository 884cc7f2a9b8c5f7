"""Kamaal's trainer: training, data, models, export and merge.

Never imports Qt.  The light modules (config, protocol, runfolder, process) are safe for the
GUI process; everything that needs torch is imported lazily inside the trainer process.
"""

__version__ = "0.1.0"
