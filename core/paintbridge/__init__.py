"""paintbridge: local AI image generation for Blender, GIMP and Krita."""

__version__ = "0.1.0"
