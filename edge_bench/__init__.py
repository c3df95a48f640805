"""On-device latency measurement (not implemented yet; see edge_bench/README.md)."""
