"""The pure sampling core: labels, weights, splits, streams and statistics.

Plain functions over numpy and torch arrays; no web framework, no database, no I/O. The
service and the client's offline fallback share it.
"""
