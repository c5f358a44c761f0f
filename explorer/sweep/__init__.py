"""Sweeps: a plan of lowerings per model, strategy and target group, compiled in isolated workers (or
on Ray), timed here against onnxruntime, then scored; and the verbs built on them (fusion, tune).
"""
