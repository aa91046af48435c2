"""The napari side: reader, writers, layer layout, sample data and the widget."""
