"""Energy cost model and hardware target descriptions (pure numpy/pandas; never imports tvm)."""
