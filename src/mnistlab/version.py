"""mnistlab's version, recorded in every run folder (`run.json`) and shown by `/api/model`."""

__version__ = "0.2.0"
