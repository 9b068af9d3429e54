"""Files in and out through GDAL/OGR: raster windows, sensor profiles, tiles, writers, vectors, pairing of two
dates, the streaming driver and reports. Imports only `engine.core`."""
