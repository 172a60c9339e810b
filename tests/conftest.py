"""Import kafka-python once with its import-time DeprecationWarnings (legacy importlib.resources
calls inside kafka-python, nothing of ours) silenced, so test output shows only our warnings."""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401
