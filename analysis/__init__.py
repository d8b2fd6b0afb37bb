"""Reading brainloop recordings back: `recording` (the HDF5 format), `report` (text summaries and
PNG figures) and the figure modules registered through `plotting`. Nothing here knows how a run
was trained; it only reads files."""
