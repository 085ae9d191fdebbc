"""The clipcls exception tree, documented in one place.

Every error clipcls raises on purpose is a :class:`ClipclsError` and also the
built-in exception a caller would naturally catch::

    ClipclsError (Exception)
    ├── TaxonomyError (ValueError)        bad taxonomy file, node or edit
    ├── ImageError (ValueError)           an image that cannot be read safely
    ├── DataError (ValueError)            labelled data: unknown labels, empty classes
    ├── ModelError (RuntimeError)         weights that cannot be found or loaded
    ├── CacheError (RuntimeError)         a cache or index that cannot be used
    ├── ProbeError (ValueError)           a probe file for another model or taxonomy
    └── NotFittedError (AttributeError)   using a probe before ``fit``

>>> issubclass(TaxonomyError, ValueError)
True
"""

from __future__ import annotations


class ClipclsError(Exception):
    """Base class of every error clipcls raises on purpose."""


class TaxonomyError(ClipclsError, ValueError):
    """A taxonomy file or edit is invalid; the message names the file and node."""


class ImageError(ClipclsError, ValueError):
    """An image could not be read; the message names the file and the reason."""


class DataError(ClipclsError, ValueError):
    """Labelled data is unusable (unknown label, no examples, bad manifest)."""


class ModelError(ClipclsError, RuntimeError):
    """Model weights are unavailable or unreadable; never replaced by random weights."""


class CacheError(ClipclsError, RuntimeError):
    """A cache, index or manifest cannot be used as asked."""


class ProbeError(ClipclsError, ValueError):
    """A probe file is corrupt or belongs to another model or taxonomy."""


class NotFittedError(ClipclsError, AttributeError):
    """An estimator was used before ``fit`` was called."""
