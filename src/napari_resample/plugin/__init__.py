"""The napari side: reader, writers, layer layout, sample data, the widget and the QC browser."""
