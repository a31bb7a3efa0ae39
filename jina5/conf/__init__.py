"""The Hydra config tree, shipped as package data.

A package, because a console script (``jina5-train``) makes Hydra look the config path up through the
calling module's package, as ``pkg://jina5.conf``, and Hydra takes a package for a config source only
when it has an ``__init__.py``. ``python -m jina5.train`` finds the same folder by file path.
"""
