"""virtdriver benchmarks: issue 8's measurements, run by ``benchmarks/run.py`` (``make bench``)."""
