"""qhelpers: the helper package behind the qcourse notebooks.

One module per concern: ``data``, ``models``, ``train``, ``quant``, ``bench``,
``plots``, ``record``, ``repro`` (and ``book``, the course runner).
"""

from .record import record
from .repro import setup

__all__ = ["record", "setup"]
__version__ = "0.1.0"
