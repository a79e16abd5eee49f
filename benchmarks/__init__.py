"""Performance figures of the embedded stack; run with ``python -m benchmarks`` (``make bench``).

Each figure is printed as one JSON object per line on stdout; progress goes to stderr.
"""
