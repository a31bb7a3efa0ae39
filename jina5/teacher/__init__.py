"""The frozen teacher and its vectors on disk: the cache a run reads, the memory-mapped store behind it,
and the pre-compute command (``python -m jina5.teacher <overrides>``)."""
