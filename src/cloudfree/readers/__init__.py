"""Pixel readers for formats other than GeoTIFF: windows of one band onto an output grid."""
