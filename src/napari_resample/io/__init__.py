"""Files: NIfTI volumes and headers, gzip, atomic writes, plane streams and SimpleITK formats."""
