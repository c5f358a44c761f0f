"""Reading the lowered TIR: a walker that counts a kernel's operations by kind and dtype, its buffer
accesses and loop nest (for the reuse model) and how its schedule runs them.
"""
