"""wsgi-gateway: serve Python WSGI applications (PEP 3333) from one Rust process.

Installed with pip, the gateway is the extension module ``wsgi_gateway._gateway`` and
runs in the virtualenv's own Python. Start it with the ``wsgi-gateway`` command or
``python -m wsgi_gateway``; both take the same arguments (``wsgi-gateway --help``).
"""

from ._gateway import __version__

__all__ = ["__version__"]
