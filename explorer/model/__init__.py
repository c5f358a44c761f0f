"""A model made ready to compile: loaded (a zoo name or an ONNX file), validated, rewritten where TVM's
importer lacks an operator, set to a decoder's phase and a batch, made static, and calibrated for int8.
"""
