"""Quality control of resampled pairs: summaries gathered as the voxels pass, the checks, the
report page and qc.json (no napari)."""
