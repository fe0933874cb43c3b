"""`make bench`: the collector's throughput, latency and delivery under wrk (see run.py)."""
