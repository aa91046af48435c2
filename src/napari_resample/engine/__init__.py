"""The resampling engine: geometry, 1-D operators, the engines, label voting (numpy/scipy)."""
