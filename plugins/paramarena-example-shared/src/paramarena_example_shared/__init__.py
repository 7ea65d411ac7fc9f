"""paramarena-example-shared: a minimal plugin that shares a ParameterDict across packages.

It owns an ``encoder`` dict (prefix ``enc_``) and makes it available as
``"exampleshared:encoder"``, so user code can write
``ParameterDict("enc_", shared="exampleshared:encoder")`` and get the very same Parameter
objects.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
