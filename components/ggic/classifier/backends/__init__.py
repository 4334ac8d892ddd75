"""Inference backends: one module per inference library, one registry keyed by name.

:mod:`.base` is the interface (:class:`~.base.Backend`: open / run / close) and the types
every backend shares; :mod:`.registry` maps the ``Backend`` configuration value to a backend
and picks one for a model directory; :mod:`.dlr` and :mod:`.onnx` are the backends. Nothing
outside a backend's own module imports its library.
"""
