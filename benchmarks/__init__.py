"""virtdriver benchmarks: issues 8 and 15 measured by ``benchmarks/run.py`` (``make bench``)."""
