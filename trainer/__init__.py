"""Kamaal's trainer: training, data, models, export and merge.

Never imports Qt.  The light modules (config, protocol, runfolder, process) are safe for the
GUI process; everything that needs torch is imported lazily inside the trainer process.
"""

__version__ = "0.1.0"


def _quiet_optional_kernels() -> None:
    """bitsandbytes and torchao (base quantization) announce, as warnings, optional kernels this machine does not
    have (a CPU-only build, an older GPU), and torch warns about their enums; none of it is a problem a person
    can act on, so those loggers show errors only.  No import: the loggers are configured by name."""
    import logging

    for name in ("torchao", "bitsandbytes", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
        logging.getLogger(name).setLevel(logging.ERROR)


_quiet_optional_kernels()
