"""The vocabulary every stage shares, and nothing else of the explorer: errors, the version, strategies,
the prepared model, the records a variant's compile and run return, and units for people.
"""
