"""The resampling engine: geometry, 1-D operators, the engines and label voting (pure numpy/scipy)."""
