"""sampleplan service: sampling plans for imbalanced datasets over HTTP.

Importing this package is cheap and pulls in no web framework, so that the client can
reuse :mod:`service.core` (the pure sampling core) without the server's dependencies.
"""

__version__ = "0.1.0"
