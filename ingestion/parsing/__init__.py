"""Bytes in, located text out: format detection and the unstructured-based parser."""

from ingestion.parsing.formats import SUPPORTED, ZipLimits, detect_format
from ingestion.parsing.unstructured_parser import UnstructuredParser

__all__ = ["SUPPORTED", "UnstructuredParser", "ZipLimits", "detect_format"]
