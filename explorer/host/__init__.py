"""This machine, read without TVM: its CPU's identity and cores, the threads builds are timed with,
the tools outside TVM its code generators need, and calls into a process with TVM's compiler.
"""
