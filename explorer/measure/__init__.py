"""Measurement on the hardware a target describes: a bundle of variants built here, its runtime-only
runner (``runner/``), predicted against measured, and a calibrated copy of the target file.
"""
