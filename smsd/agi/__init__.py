"""smsd.agi: the FastAGI server (``agi://host:4573/<script>?k=v``) and its scripts.

Layers, imports pointing down: ``protocol`` (pure wire format) -> ``session``
(one connection, one command at a time) -> ``server`` (accept, bound, route);
``channel`` reads message channels; ``handlers`` / ``inbound`` are the scripts.
"""
