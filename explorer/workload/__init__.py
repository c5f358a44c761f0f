"""The workload table: per kernel call, the operations by kind and dtype, traffic curves from the
loop nests' reuse, parallelism, lanes and tensorized share. The only thing that crosses to ``cost_models``.
"""
