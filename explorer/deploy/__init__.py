"""Deployment builds: run a variant on this CPU, choose the best under limits, and export it with a
standalone runner (``runner.py``, copied as ``run.py``) that needs only TVM's runtime.
"""
