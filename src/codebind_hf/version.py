"""The library version, in a module of its own so that artifact writers can record it without importing the
package root (which imports them)."""

__version__ = "0.1.0"
