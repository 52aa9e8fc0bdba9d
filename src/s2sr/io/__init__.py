"""Reading Sentinel-2 scenes and writing georeferenced rasters.

Each name has one home: import it from its module (``s2sr.io.scene.open_scene``,
``s2sr.io.base.GeoMeta``, ``s2sr.io.writer.RasterWriter``...).
"""
