"""Measure a bundle's variants: ``python measure_runner.py`` in the bundle (this file, copied there) or
``python -m runner`` from the bundle's folder. See the package's docstring."""

import sys

if __package__:
    from .cli import main
else:  # the bundle's measure_runner.py: the package is ``runner/`` beside it
    from runner.cli import main

sys.exit(main())
