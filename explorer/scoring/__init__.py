"""From workloads to rows: each variant scored on a target (energy, latency, status, accuracy), the
rankings, fusion's savings per kernel and the picks among tuning candidates. Cheap: recomputed every run.
"""
