"""csu-lab: robust audio tagging under unreliable labels.

The data flows one way, one module per stage::

    benchmark / loaders (datasets) -> corruption -> features (cached) -> models -> losses
        -> train (training loop) -> records (run record) -> probes -> plots
"""
__version__ = "0.1.0"
