"""The ``explorer`` command: a parser of one module per verb; each verb parses, calls the Python API and
prints or writes. ``main`` holds the exit policy.
"""
