"""Files: NIfTI volumes and headers, gzip, atomic writes, plane streams and SimpleITK formats.

- :mod:`~napari_resample.io.nifti`: the NIfTI volume, read and written whole.
- :mod:`~napari_resample.io.checks`: what a file must pass before its voxels are read, and the
  wording of read errors.
- :mod:`~napari_resample.io.header`: headers for output (resampled, made for an affine, typed).
- :mod:`~napari_resample.io.gzip`: gzip read to the end of its stream and checked, written fast.
- :mod:`~napari_resample.io.atomic`: temporary files renamed into place, folders made and removed.
- :mod:`~napari_resample.io.plane_reader`, :mod:`~napari_resample.io.plane_writer` (and their
  :mod:`~napari_resample.io.plane_queue`): volumes larger than memory, plane by plane.
- :mod:`~napari_resample.io.formats`, :mod:`~napari_resample.io.itk`: NRRD, MetaImage and DICOM
  through SimpleITK.
- :mod:`~napari_resample.io.names`: file suffixes and output names;
  :mod:`~napari_resample.io.phantom`: the synthetic sample volumes.
"""
