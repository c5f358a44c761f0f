"""``explorer doctor``: what this machine and its installation can do, each checked by doing it.
"""
